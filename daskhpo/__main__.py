"""``python -m daskhpo ...`` runs the command line (see :mod:`daskhpo.cli`)."""

import sys

from .cli import main

sys.exit(main())
