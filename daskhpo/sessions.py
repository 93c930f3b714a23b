"""Moved to :mod:`daskhpo.store.sessions`; ``daskhpo.sessions`` stays importable as that same module."""

import sys

from .store import sessions as _moved

sys.modules[__name__] = _moved
