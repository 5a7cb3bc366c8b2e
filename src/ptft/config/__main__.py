"""`python -m ptft.config explain --configfile X --job ...`: one job's settings (ptft.explain, which needs the
cross-module checks of ptft.checks and so cannot live in ptft.config itself)."""

import sys

from ptft.explain import main

if __name__ == "__main__":
    sys.exit(main())
