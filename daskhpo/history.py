"""Moved to :mod:`daskhpo.store.history`; ``daskhpo.history`` stays importable as that same module."""

import sys

from .store import history as _moved

sys.modules[__name__] = _moved
