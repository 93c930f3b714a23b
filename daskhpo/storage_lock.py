"""Moved to :mod:`daskhpo.store.lock`; ``daskhpo.storage_lock`` stays importable as that same module."""

import sys

from .store import lock as _moved

sys.modules[__name__] = _moved
