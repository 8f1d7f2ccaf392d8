"""python -m circus.plugins: the circus-plugin command (how circusd runs plugins)."""
import sys

from circus.plugins.runner import main

sys.exit(main())
