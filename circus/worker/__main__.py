"""python -m circus.worker: the same as circus-worker."""
import sys

from circus.worker.cli import main

sys.exit(main())
