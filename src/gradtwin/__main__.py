"""`python -m gradtwin` runs the command line."""

import sys

from gradtwin.cli import main

sys.exit(main())
