"""Module names that moved, still importable: ``import daskhpo.sklearn`` is ``daskhpo.integrations.sklearn``.

The package shows its architecture (the core; ``store/``; ``viz/``; ``integrations/``), but
users' scripts, the docs' short paths (``daskhpo.sklearn``, ``daskhpo.callbacks``,
``daskhpo.client``, ``daskhpo.plot``, ``daskhpo.progress``) and pickles made by older versions
name modules by where they were.  One import hook serves each old name as the very module
it became (the same object, so classes and ``isinstance`` are shared), instead of a
stand-in file per name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__all__ = ["MOVED", "install"]

#: old name (under ``daskhpo``) -> the module it is now
MOVED = {
    # the store
    "history": "store.history", "journal": "store.journal", "checkpoints": "store.checkpoints",
    "sessions": "store.sessions", "storage_errors": "store.errors", "storage_lock": "store.lock",
    # visualisation
    "plot": "viz.plot", "plot_export": "viz.export", "dashboard": "viz.dashboard", "progress": "viz.progress",
    "_notebook": "viz._notebook",
    # integrations
    "cli": "integrations.cli", "external": "integrations.hunt", "sklearn": "integrations.sklearn",
    "sklearn_objective": "integrations.sklearn_objective",
    "sklearn_distributions": "integrations.sklearn_distributions",
    "session_cluster": "integrations.session_cluster", "callbacks": "integrations.callbacks",
    "driver": "integrations.driver", "cluster": "integrations.cluster", "client": "integrations.client",
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str) -> None:
        self.prefix = package + "."

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith(self.prefix) and fullname[len(self.prefix):] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # the moved module itself: importlib keeps its own name and spec, and binds it under the old name too
        return importlib.import_module(self.prefix + MOVED[spec.name[len(self.prefix):]])

    def exec_module(self, module: ModuleType) -> None:  # already executed under its new name
        pass


def install(package: str) -> None:
    """Serve the old names under ``package`` (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(package))  # before path finders: no stale file of an old name wins
