"""``python -m fxcost`` runs the command line."""

import sys

from fxcost.cli import main

sys.exit(main())
