"""Moved to :mod:`daskhpo.store.checkpoints`; ``daskhpo.checkpoints`` stays importable as that same module."""

import sys

from .store import checkpoints as _moved

sys.modules[__name__] = _moved
