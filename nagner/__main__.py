"""`python -m nagner` = the `nagner` command."""

import sys

from nagner.cli import main

sys.exit(main())
