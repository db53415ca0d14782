import sys

from clonewatch.cli import main

sys.exit(main())
