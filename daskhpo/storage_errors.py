"""Moved to :mod:`daskhpo.store.errors`; ``daskhpo.storage_errors`` stays importable as that same module."""

import sys

from .store import errors as _moved

sys.modules[__name__] = _moved
