import sys

from circus.stats import main

sys.exit(main())
