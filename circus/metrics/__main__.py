import sys

from circus.metrics.exporter import main

sys.exit(main())
