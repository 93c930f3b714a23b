"""Objectives that cannot travel, and failures that are not the objective's.

Dask sends the objective to the workers with :mod:`cloudpickle`: a function of an
importable module travels by reference (its name), a function of a script (``__main__``),
a notebook, a closure or a lambda travels by value, *with every global, closure variable
and default it uses*.  One of those that cannot be pickled (a lock, an open file, a
database connection, a CUDA context) makes every submission fail with an error that names
neither the objective nor the object.

* :func:`check_picklable` is called once, before the first submission: it raises
  :class:`UnpicklableObjective` naming the objective and, where it can be found, the
  global, closure variable, default or keyword argument that cannot travel.
* :class:`PickledObjective` pickles the objective once per run, not once per trial.
* :func:`classify_failure` tells a lost worker (retry elsewhere) from any other error
  outside the objective (the trial is ``broken``, with :func:`failure_reason` as its error).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import cloudpickle

__all__ = ["PickledObjective", "UnpicklableObjective", "check_picklable", "classify_failure", "failure_reason"]

logger = logging.getLogger(__name__)

#: how deep :func:`check_picklable` follows functions, containers and attributes
_MAX_DEPTH = 6


class UnpicklableObjective(TypeError):
    """The objective (or its keyword arguments) cannot be sent to the Dask workers.

    Attributes
    ----------
    objective : str
        The objective's qualified name and module.
    culprit : str or None
        Where the object that cannot be pickled was found, e.g.
        ``"global 'LOCK' (a _thread.lock)"``; ``None`` when it could not be narrowed down.
    """

    def __init__(self, message: str, objective: str = "", culprit: str | None = None) -> None:
        super().__init__(message)
        self.objective = objective
        self.culprit = culprit

    def __reduce__(self):
        return (type(self), (str(self), self.objective, self.culprit))


# -- finding what cannot travel ------------------------------------------------------------------


def _pickle_error(obj: Any) -> BaseException | None:
    """The error of a cloudpickle round trip of ``obj``, or ``None`` when it travels."""
    try:
        cloudpickle.loads(cloudpickle.dumps(obj))
    except RecursionError as exc:  # pragma: no cover - very deep structures
        return exc
    except Exception as exc:
        return exc
    return None


def _type_name(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", None) else f"{module}.{cls.__qualname__}"


def _describe(obj: Any) -> str:
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        return f"function {getattr(obj, '__qualname__', obj)!s}"
    return f"a {_type_name(obj)}"


def _code_names(code: types.CodeType) -> Iterator[str]:
    """Global names a code object (and the functions, lambdas, comprehensions in it) use."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _by_reference(fn: Any) -> bool:
    """Whether cloudpickle sends ``fn`` by name (an importable module's function)."""
    try:
        return bool(cloudpickle.cloudpickle._should_pickle_by_reference(fn))
    except Exception:  # pragma: no cover - private API moved: assume by value, and look
        return False


def _parts(obj: Any) -> Iterator[tuple[str, Any]]:
    """The labelled objects that travel with ``obj`` when it is pickled by value."""
    if isinstance(obj, functools.partial):
        yield "the partial's function", obj.func
        for i, arg in enumerate(obj.args):
            yield f"partial argument {i}", arg
        for key, arg in obj.keywords.items():
            yield f"partial keyword {key!r}", arg
        return
    if isinstance(obj, types.MethodType):
        yield "the method's instance", obj.__self__
        yield f"method {obj.__func__.__qualname__}", obj.__func__
        return
    if isinstance(obj, types.FunctionType):
        if _by_reference(obj):
            return
        code = obj.__code__
        seen: set[str] = set()
        for name in _code_names(code):
            if name in seen or name not in obj.__globals__:
                continue
            seen.add(name)
            value = obj.__globals__[name]
            if isinstance(value, types.ModuleType):
                continue
            yield f"global {name!r}", value
        if obj.__closure__:
            for name, cell in zip(code.co_freevars, obj.__closure__):
                try:
                    value = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                yield f"closure variable {name!r}", value
        for name, value in zip(
            code.co_varnames[code.co_argcount - len(obj.__defaults__ or ()) : code.co_argcount],
            obj.__defaults__ or (),
        ):
            yield f"default of {name!r}", value
        for name, value in (obj.__kwdefaults__ or {}).items():
            yield f"default of {name!r}", value
        return
    if isinstance(obj, Mapping):
        for key, value in list(obj.items())[:1000]:
            yield f"[{key!r}]", value
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(list(obj)[:1000]):
            yield f"item {i}", value
        return
    if isinstance(obj, type):
        if not _by_reference(obj):  # a class of a script travels with its attributes
            for key, value in vars(obj).items():
                if not (key.startswith("__") and key.endswith("__")):
                    yield f"class attribute {key!r}", value
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        for key, value in state.items():
            yield f"attribute {key!r}", value


def _culprit(obj: Any, depth: int = 0, path: frozenset[int] = frozenset()) -> list[str] | None:
    """The path to the innermost part of ``obj`` that cannot be pickled, or ``None``."""
    if depth >= _MAX_DEPTH:
        return None
    path = path | {id(obj)}
    for label, part in _parts(obj):
        if id(part) in path or _pickle_error(part) is None:  # a recursive function: look elsewhere
            continue
        deeper = _culprit(part, depth + 1, path)
        return [f"{label} ({_describe(part)})", *(deeper or [])]
    return None


def _objective_name(fn: Any) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    qualname = getattr(target, "__qualname__", None) or f"{type(target).__qualname__} instance"
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{qualname!s} (module {module!r})"


def check_picklable(fn: Any, fn_kwargs: Mapping[str, Any] | None = None) -> int:
    """Check that the objective and its keyword arguments can travel to the workers.

    Call it once, before the first submission.  It pickles with :mod:`cloudpickle`, as Dask
    does, and unpickles again (in this process: a module the workers cannot import is
    not detected here).

    Parameters
    ----------
    fn : callable
        The objective.
    fn_kwargs : mapping, optional
        The fixed keyword arguments sent with every trial.

    Returns
    -------
    int
        The pickled size of ``fn`` and ``fn_kwargs`` in bytes (sent with every trial: worth
        a warning when large).

    Raises
    ------
    UnpicklableObjective
        Naming the objective (qualified name and module) and, where it can be found, the
        global, closure variable, default, keyword argument or attribute that cannot be
        pickled, with the pickling error.
    """
    name = _objective_name(fn)
    parts: list[tuple[str, Any]] = [("", fn)]
    parts += [(f"fn_kwargs[{key!r}]", value) for key, value in (fn_kwargs or {}).items()]
    size = 0
    for label, obj in parts:
        error = _pickle_error(obj)
        if error is None:
            size += len(cloudpickle.dumps(obj))
            continue
        path = _culprit(obj) or []
        if label:
            path = [f"{label} ({_describe(obj)})", *path]
        culprit = " -> ".join(path) if path else None
        where = f": {culprit} cannot be pickled" if culprit else ""
        message = (
            f"objective {name} cannot be sent to the Dask workers{where} "
            f"({type(error).__name__}: {error}). Create such objects inside the objective (once per "
            "worker process, e.g. in a module-level cache), pass picklable settings instead, or define "
            "the objective in an importable module so that it travels by name."
        )
        raise UnpicklableObjective(message, objective=name, culprit=culprit) from error
    return size


# -- failures outside the objective --------------------------------------------------------------

#: reasons of :class:`distributed.client.FutureCancelledError` that mean the cluster lost the task
LOST_REASONS = frozenset({"scheduler-connection-lost", "scheduler-restart", "lost dependencies"})


def _lost_types() -> tuple[type[BaseException], ...]:
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (KilledWorker, CommClosedError, ConnectionError)


def classify_failure(exc: BaseException) -> Literal["lost", "broken"]:
    """Whether a task that failed *outside the objective* lost its worker, or broke.

    The trial runner catches the objective's own exceptions, so an exception on a future
    comes from around it: a worker that died or went away (``"lost"``: run the trial again,
    elsewhere, a bounded number of times) or anything else (``"broken"``: running it again
    gives the same error), e.g. an objective that cannot be unpickled on the worker (a
    module missing there), a result that cannot be sent back, no worker with the requested
    resources.

    Parameters
    ----------
    exc : BaseException
        The future's exception.

    Returns
    -------
    {"lost", "broken"}
        ``"lost"`` for :class:`distributed.scheduler.KilledWorker`, the engine's
        :class:`~daskhpo.engine.worker.AttemptLost`,
        :class:`distributed.comm.CommClosedError` and other connection errors, and a
        :class:`distributed.client.FutureCancelledError` whose reason is a lost scheduler or
        lost dependencies (:data:`LOST_REASONS`).  Everything else, including a cancellation
        by someone else (reason ``"unknown"``), is ``"broken"``.
    """
    from distributed.client import FutureCancelledError

    if isinstance(exc, FutureCancelledError):
        return "lost" if getattr(exc, "reason", None) in LOST_REASONS else "broken"
    if isinstance(exc, _lost_types()) or getattr(exc, "daskhpo_lost", False):
        return "lost"  # daskhpo_lost: an attempt started again after its worker left (AttemptLost)
    return "broken"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def failure_reason(exc: BaseException) -> str:
    """A one-line explanation of a failure outside the objective, for the trial's error.

    It follows the exception's cause: Dask reports a graph that cannot be unpickled on the
    scheduler or a worker as ``RuntimeError('Error during deserialization ...')`` caused by
    the real error (often a module missing there).
    """
    from distributed.client import FutureCancelledError

    if classify_failure(exc) == "lost":
        return f"the trial's worker or its connection was lost ({_one_line(exc)})"
    if isinstance(exc, FutureCancelledError):
        return f"the trial was cancelled outside daskhpo (reason: {getattr(exc, 'reason', '?')})"
    chain = list(_chain(exc))
    loading = [e for e in chain if isinstance(e, (pickle.UnpicklingError, ImportError, AttributeError, EOFError))]
    if loading or "deserializ" in str(exc).lower():
        root = loading[0] if loading else chain[-1]
        return (
            f"the objective or its arguments could not be unpickled on the cluster ({_one_line(root)}); "
            "is every module the objective uses installed and importable on the scheduler and the workers?"
        )
    return f"the trial failed outside the objective ({_one_line(exc)})"


# -- the objective, pickled once per run ---------------------------------------------------------

#: objectives a worker process has unpickled, by digest (most recent last)
_LOADED: OrderedDict[str, Any] = OrderedDict()
_LOADED_LOCK = threading.Lock()
#: objectives a worker keeps unpickled (one per run, so a handful of runs)
_LOADED_MAX = 8


class PickledObjective:
    """An objective pickled once on the client, for every trial of a run.

    Dask pickles a task's function with every submission; for an objective that travels
    by value (defined in a script or a notebook) that means walking its globals and
    modules again for each trial, which took most of the loop's time with short trials.
    This object holds the pickle made once and travels as those bytes; a worker unpickles
    it into the objective itself, a function once per process (cached by digest; its
    globals then live as long as the process, as an imported module's do) and any other
    callable once per trial, wherever Dask
    unpickles the task's arguments (the worker's main thread: modules that install signal
    handlers when imported still can).  Only the function: the fixed keyword arguments
    stay ordinary task arguments, so Dask futures among them are still resolved.

    Parameters
    ----------
    fn : callable
        The objective (already checked by :func:`check_picklable`).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.payload = cloudpickle.dumps(fn)
        self.digest = hashlib.sha1(self.payload).hexdigest()
        self.name = _objective_name(fn)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[bytes, str]]:
        return _unpickle_objective, (self.payload, self.digest)

    def __repr__(self) -> str:
        return f"PickledObjective({self.name}, {len(self.payload)} bytes)"


def _unpickle_objective(payload: bytes, digest: str) -> Callable[..., Any]:
    """The objective of a :class:`PickledObjective`: a function is unpickled once per process;
    any other callable (an object that may keep state between calls) once per trial, as when
    Dask pickled it with each task."""
    with _LOADED_LOCK:
        fn = _LOADED.get(digest)
        if fn is not None:
            _LOADED.move_to_end(digest)
            return fn
    fn = cloudpickle.loads(payload)
    if not isinstance(fn, types.FunctionType):
        return fn
    with _LOADED_LOCK:
        _LOADED[digest] = fn
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return fn
