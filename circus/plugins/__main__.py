"""python -m circus.plugins: the circus-plugin command (how circusd runs plugins)."""
import sys

from circus.plugins import main

sys.exit(main())
