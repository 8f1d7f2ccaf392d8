import sys

from circus.stats.streamer import main

sys.exit(main())
