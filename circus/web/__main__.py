import sys

from circus.web.circushttpd import main

sys.exit(main())
