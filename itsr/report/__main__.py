"""`python -m itsr.report DIR... [--out FILE] [--overwrite]`; see itsr.report.cli."""

import sys

from itsr.report.cli import main

sys.exit(main())
