"""The package's shape: no import cycle, and layers above the experiment use its public API."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daskhpo"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def exists(name: str) -> bool:
    return is_package(name) or (PACKAGE.parent / (name.replace(".", "/") + ".py")).exists()


class _Imports(ast.NodeVisitor):
    """Every daskhpo module a module imports at run time (``if TYPE_CHECKING:`` excluded)."""

    def __init__(self, name: str, package: str) -> None:
        self.name, self.package, self.found = name, package, set()

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(a.name for a in node.names if a.name.split(".")[0] == "daskhpo")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "daskhpo":
            return
        for alias in node.names:  # `from . import plot` imports the module daskhpo.viz.plot
            sub = f"{target}.{alias.name}"
            self.found.add(sub if exists(sub) else target)


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        visitor = _Imports(name, package)
        visitor.visit(ast.parse(path.read_text()))
        graph[name] = {m for m in visitor.found if m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "daskhpo.records" in graph["daskhpo.store.history"]
    assert "daskhpo.engine.executor" in graph["daskhpo.engine.loop"]
    assert "daskhpo.viz.plot" in graph["daskhpo.viz.dashboard"]  # `from . import plot as _plot`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_layers_depend_downwards():
    """Storage knows records, not optimizers; the engine knows no algorithm; optimizers no Dask."""
    graph = import_graph()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert graph["daskhpo.records"] == set()
    store = {m for m in graph if m.startswith("daskhpo.store")}
    assert {"daskhpo.store.history", "daskhpo.store.journal", "daskhpo.store.lock"} <= store
    for module in store:  # the store knows records, never who writes them
        assert not any(m.startswith(("daskhpo.optimizers", "daskhpo.engine", "daskhpo.experiment")) for m in reach(module)), module
    for module in (m for m in graph if m.startswith("daskhpo.experiment")):  # files only through the Storage
        assert not graph[module] & {f"daskhpo.store.{m}" for m in ("lock", "journal", "sessions", "errors")}, module
    engine = {m for m in graph if m.startswith("daskhpo.engine")}
    for module in engine:
        assert not any(m.startswith(("daskhpo.optimizers", "daskhpo.experiment")) for m in reach(module)), module
    for module in (m for m in graph if m.startswith("daskhpo.optimizers")):
        assert not any(m.startswith(("daskhpo.engine", "daskhpo.store", "daskhpo.experiment")) for m in reach(module)), module
    for viz in ("daskhpo.viz.plot", "daskhpo.viz.dashboard"):
        assert "daskhpo.experiment" not in reach(viz)


#: the layers, lowest first: a module imports only from its own layer or those below it
LAYERS = [
    ("core", ("daskhpo._version", "daskhpo._moved", "daskhpo.records", "daskhpo.results", "daskhpo.space",
              "daskhpo.pareto", "daskhpo.objectives", "daskhpo.pickling", "daskhpo.reporting",
              "daskhpo.devices")),
    ("parts", ("daskhpo.optimizers", "daskhpo.engine", "daskhpo.store")),
    ("experiment", ("daskhpo.experiment", "daskhpo.testing")),
    ("viz", ("daskhpo.viz",)),
    ("integrations", ("daskhpo.integrations",)),
    ("package", ("daskhpo", "daskhpo.__main__")),
]
#: imports upwards, each for a reason: the experiment's conveniences (``experiment.plot``,
#: ``.dashboard()``, ``workon(progress=...)``) load the layer above on first use
UPWARD = {
    ("daskhpo.experiment.view", "daskhpo.viz.plot"), ("daskhpo.experiment.view", "daskhpo.viz.dashboard"),
    ("daskhpo.experiment.run", "daskhpo.viz.progress"), ("daskhpo.experiment.facade", "daskhpo.viz.dashboard"),
}


def layer(module: str) -> int:
    """The rank of ``module``'s layer in :data:`LAYERS`."""
    for rank, (_name, prefixes) in enumerate(LAYERS):
        if module in prefixes or any(module.startswith(p + ".") for p in prefixes if p != "daskhpo"):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def test_every_module_has_a_layer_and_imports_only_downwards():
    graph = import_graph()
    upward = set()
    for module, imports in graph.items():
        for imported in imports:
            if layer(imported) > layer(module):
                upward.add((module, imported))
    assert upward == UPWARD, sorted(upward ^ UPWARD)


def test_the_parts_know_nothing_of_each_other():
    """Optimizers, engine and store each stand on the core alone."""
    graph = import_graph()
    parts = ("daskhpo.optimizers", "daskhpo.engine", "daskhpo.store")
    for module, imports in graph.items():
        own = next((p for p in parts if module.startswith(p)), None)
        if own is not None:
            others = {i for i in imports if i.startswith(parts) and not i.startswith(own)}
            assert not others, (module, others)


def private_accesses(package: Path = PACKAGE) -> list[tuple[str, str, str]]:
    """``(module, private name, where)`` for each use of another daskhpo module's private name.

    On the AST: ``from x import _name``; ``module._name`` on an imported daskhpo module; and
    ``obj._name`` where ``_name`` is not defined in the module itself but in another one of
    the package (``self._name`` of a base class included only when no base defines it:
    subclasses may use what their bases give them).
    """
    def defined_in(tree: ast.AST) -> set[str]:
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
        return {n for n in names if n.startswith("_") and not n.startswith("__")}

    def name_of(path: Path) -> str:
        parts = path.relative_to(package.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    trees = {name_of(p): (p, ast.parse(p.read_text())) for p in package.rglob("*.py")}
    own = {name: defined_in(tree) for name, (_p, tree) in trees.items()}
    found = []
    for name, (path, tree) in trees.items():
        package_name = name if path.name == "__init__.py" else name.rpartition(".")[0]
        elsewhere = set().union(*(d for other, d in own.items() if other != name)) - own[name]
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package_name.split(".")[: len(package_name.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if target.split(".")[0] != package.name:
                    continue
                for alias in node.names:
                    if f"{target}.{alias.name}" in trees:  # a module of the package
                        modules[alias.asname or alias.name] = f"{target}.{alias.name}"
                    elif alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append((name, alias.name, f"from {target} import {alias.name}"))
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue  # its own, or its base class's
                if (isinstance(base, ast.Name) and base.id in modules) or node.attr in elsewhere:
                    found.append((name, node.attr, ast.unparse(node)))
    return found


def test_no_module_uses_another_module_s_private_names():
    assert private_accesses() == []


def test_the_private_access_check_sees_what_it_forbids(tmp_path):
    pkg = tmp_path / "daskhpo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_secret = 1\nclass A:\n    def __init__(self):\n        self._state = 0\n")
    (pkg / "b.py").write_text("from . import a\nfrom .a import _secret\n\ndef peek(obj):\n"
                              "    return a._secret, obj._state\n")
    found = {(m, n) for m, n, _where in private_accesses(pkg)}
    assert {("daskhpo.b", "_secret"), ("daskhpo.b", "_state")} <= found


def test_the_experiment_writes_through_its_storage_only():
    """No branch on an in-memory experiment: the Storage implementations differ, not the experiment."""
    for path in (PACKAGE / "experiment").glob("*.py"):
        source = path.read_text()
        for branch in ("path is None", "storage is None", "path is not None", "storage is not None"):
            assert branch not in source, (path.name, branch)


def test_the_store_and_the_experiment_are_small_modules():
    for package in ("store", "experiment"):
        for path in (PACKAGE / package).glob("*.py"):
            assert len(path.read_text().splitlines()) <= 450, path


#: modules that touch files, sockets or processes
FILE_IO = {"os", "io", "pathlib", "shutil", "tempfile", "glob", "fnmatch", "subprocess", "socket", "pickle", "shelve",
           "sqlite3", "mmap", "fcntl", "xarray", "netCDF4", "h5py", "h5netcdf"}


class _ImportTimeImports(_Imports):
    """What a module imports when it is imported: every module, daskhpo's resolved, function bodies excluded."""

    def __init__(self, name: str, package: str) -> None:
        super().__init__(name, package)
        self.external: set[str] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # runs later, if ever
        return

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        super().visit_Import(node)
        self.external.update(a.name.split(".")[0] for a in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        super().visit_ImportFrom(node)
        if not node.level and node.module:
            self.external.add(node.module.split(".")[0])


def _every_import(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports anywhere (function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("open", "__import__"):
            found.add(f"{node.func.id}()")
    return found


def test_the_loop_and_its_state_machine_know_no_dask_and_do_no_file_io():
    """The loop (a driver) and the state machine (its decisions) are the engine's core: no Dask, no files.

    Checked on the AST: their own imports and ``open()`` calls anywhere in them, and every
    module imported when they are imported (function bodies, which run later, excluded).
    """
    core = {"daskhpo.engine.loop": PACKAGE / "engine" / "loop.py", "daskhpo.engine.state": PACKAGE / "engine" / "state.py"}
    for name, path in core.items():
        own = _every_import(path)
        assert not own & {"distributed", "dask", "dask_jobqueue"}, (name, own)
        assert not own & (FILE_IO | {"open()"}), (name, own & (FILE_IO | {"open()"}))
    # the state machine is pure: no clock, no thread, no randomness
    assert not _every_import(core["daskhpo.engine.state"]) & {"time", "threading", "queue", "uuid", "random", "signal",
                                                               "asyncio", "concurrent"}
    seen, todo = set(), list(core)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE.parent / name.replace(".", "/") / "__init__.py"
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        visitor = _ImportTimeImports(name, package)
        visitor.visit(ast.parse(path.read_text()))
        assert not visitor.external & {"distributed", "dask", "dask_jobqueue"}, (name, "imported by the engine's core")
        todo += [m for m in visitor.found if m != name and m not in ("daskhpo", "daskhpo.engine")]
    assert "daskhpo.engine.quarantine" in seen and "daskhpo.engine.dask_executor" not in seen


def test_the_state_machine_check_sees_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom distributed import Client\ndef f():\n    return open('x')\n")
    assert {"os", "distributed", "open()"} <= _every_import(bad)
