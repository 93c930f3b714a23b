"""``python -m daskhpo ...`` runs the command line (see :mod:`daskhpo.integrations.cli`)."""

import sys

from .integrations.cli import main

sys.exit(main())
