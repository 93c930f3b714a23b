"""Moved to :mod:`daskhpo.store.journal`; ``daskhpo.journal`` stays importable as that same module."""

import sys

from .store import journal as _moved

sys.modules[__name__] = _moved
