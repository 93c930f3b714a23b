"""Creating or resuming: what is stored, what was asked, and the experiment they make together.

:func:`reconcile` checks the arguments of :func:`~daskhpo.build_experiment` against the
experiment stored at ``storage`` (space, objectives, direction, warm start), takes the
stored seed and algorithm where none is given, and makes the optimizer and the attrs to
write; :func:`warm_start_trials` reads another experiment's completed trials for a warm
start.  Nothing here writes: :mod:`daskhpo.experiment.build` does, through the storage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from .._version import __version__
from ..objectives import objectives_from_attrs
from ..optimizers import Optimizer, available, make_optimizer, optimizer_class
from ..records import TrialRecord
from ..space import Space
from ..store import Stored, read_history
from .state import dump_queue

__all__ = ["WARM_START_ID", "Reconciled", "reconcile", "unconsumed", "warm_start_trials", "IDENTITY"]

logger = logging.getLogger(__name__)

#: the id of the first trial of a ``warm_start`` as the optimizer is told it (the k-th
#: completed trial of the other experiment is ``WARM_START_ID + k``): far above any id of
#: this experiment, so that no optimizer mistakes one for a trial of its own
WARM_START_ID = 2**40

#: the attrs that say which algorithm runs: on resume, a change of any of them is written
#: when a run starts (:attr:`Reconciled.on_run`), never by a call that runs nothing
IDENTITY = ("algorithm", "algorithm_config", "seed", "algorithm_history")


@dataclasses.dataclass
class Reconciled:
    """The experiment that the arguments and the stored one make together."""

    optimizer: Optimizer
    #: the attrs to write (without the driver session, which the storage adds)
    attrs: dict[str, Any]
    #: the stored events, in their order (empty for a new experiment)
    events: list
    #: the stored attrs (empty for a new experiment)
    stored_attrs: dict[str, Any]
    #: a warm start's trials, to tell before the events
    warm: list[TrialRecord]
    #: attrs to write when the next run starts: another algorithm or seed than the stored
    #: one (``attrs`` keeps the stored ones until then); empty when nothing changed
    on_run: dict[str, Any] = dataclasses.field(default_factory=dict)


def space_diff(stored: Space, given: Space) -> str:
    """The two spaces side by side, one parameter a line, differences marked ``!``."""
    lines = []
    for name in sorted(set(stored) | set(given)):
        a = str(stored[name]) if name in stored else "(absent)"
        b = str(given[name]) if name in given else "(absent)"
        mark = "  " if a == b else "! "
        lines.append(f"{mark}{name}: stored {a} | given {b}")
    return "\n".join(lines)


def reconcile(
    name: str,
    space: Space,
    stored: Stored | None,
    storage: str | os.PathLike | None,
    *,
    algorithm: Any,
    seed: int | None,
    direction: str | None,
    objectives: dict[str, str] | None,
    warm_start: str | os.PathLike | None,
    keep_checkpoints: str | int,
) -> Reconciled:
    """Check the arguments against ``stored`` and make the optimizer and attrs to write.

    Arguments as for :func:`daskhpo.build_experiment` (``direction`` and ``objectives``
    already checked on their own); ``storage`` only names the storage in messages.

    Raises
    ------
    ValueError
        For a stored experiment with another name, space, objectives or direction, a warm start
        given to a stored experiment created without the same one, or an algorithm that
        cannot search the objectives.
    """
    events: list = []
    stored_attrs: dict[str, Any] = {}
    if stored is not None:
        stored_space, stored_attrs, events = stored
        stored_name = str(stored_attrs.get("name") or "")
        if stored_name and name != stored_name:
            raise ValueError(
                f"name={name!r}, but storage {os.fspath(storage)!r} holds experiment {stored_name!r}; pass "
                f"name={stored_name!r} to resume it, or another storage path for a new experiment"
            )
        if stored_space != space:
            raise ValueError(
                f"storage {os.fspath(storage)!r} holds experiment {stored_attrs.get('name')!r} with "
                f"another space:\n{space_diff(stored_space, space)}"
            )
        stored_objectives = objectives_from_attrs(stored_attrs)
        if objectives is not None and objectives != stored_objectives:
            held = f"objectives {stored_objectives}" if stored_objectives else "one objective"
            raise ValueError(f"objectives={objectives!r}, but storage {os.fspath(storage)!r} holds an experiment with "
                             f"{held}; leave objectives out to resume it")
        if stored_objectives and direction is not None:
            raise ValueError(f"direction={direction!r}, but storage {os.fspath(storage)!r} holds an experiment "
                             f"with objectives {stored_objectives}; leave direction out to resume it")
        objectives = stored_objectives or None
        stored_direction = str(stored_attrs.get("direction", "minimize"))
        if direction is not None and direction != stored_direction:
            raise ValueError(
                f"direction={direction!r}, but storage {os.fspath(storage)!r} holds an experiment that "
                f"{stored_direction[:-1]}es its objective; leave direction out to resume it"
            )
        direction = stored_direction
        stored_warm = stored_attrs.get("warm_start") or None
        if warm_start is not None and (stored_warm is None or os.path.abspath(warm_start) != stored_warm):
            raise ValueError(
                f"warm_start={os.fspath(warm_start)!r}: storage {os.fspath(storage)!r} holds an experiment "
                f"created with warm_start={stored_warm!r}; a warm start is given only when an experiment is "
                "created (leave it out to resume)"
            )
        warm_start = stored_warm
        if seed is None:
            seed = int(stored_attrs["seed"])
        if algorithm is None and "algorithm" in stored_attrs:
            algorithm = (stored_attrs["algorithm"], json.loads(stored_attrs.get("algorithm_config", "{}")))
        logger.info("%s: resuming from %s (%d events)", name, storage, len(events))
    if seed is None:
        seed = make_optimizer("random", space, None).seed
    optimizer = make_optimizer("random" if algorithm is None else algorithm, space, seed)
    attrs = {
        "name": name,
        "space": json.dumps(space.to_dict()),
        "algorithm": optimizer.name or type(optimizer).__name__,
        "algorithm_config": json.dumps(optimizer.config),
        "seed": int(optimizer.seed),
        "daskhpo_version": __version__,
        "direction": direction or "minimize",
    }
    if objectives:
        del attrs["direction"]  # each objective has its own
        attrs["objectives"] = json.dumps(objectives)
        if not type(optimizer).multi_objective:
            searchers = sorted(n for n in available() if optimizer_class(n).multi_objective)
            raise ValueError(
                f"algorithm {attrs['algorithm']!r} optimizes one objective, and this experiment has objectives "
                f"{list(objectives)}; use one of {searchers} (e.g. ('parego', {{'sampler': 'tpe'}}))"
            )
        if keep_checkpoints == "best":
            raise ValueError(f"keep_checkpoints='best' needs one objective; this experiment has objectives "
                             f"{list(objectives)} (keep 'all' or the N most recent)")
    warm: list[TrialRecord] = []
    if warm_start is not None:
        if optimizer.name == "pbt":
            raise ValueError("warm_start is not supported by the 'pbt' algorithm (its population is its own lineages)")
        attrs["warm_start"] = os.path.abspath(warm_start)
        warm = warm_start_trials(warm_start, space, attrs.get("direction", "minimize"), objectives or {})
    changes, changed = _algorithm_history(name, stored_attrs, attrs, events)
    attrs["algorithm_history"] = json.dumps(changes)
    on_run: dict[str, Any] = {}
    if changed and stored_attrs.get("algorithm"):
        # Another algorithm or seed than the stored one: written when a run starts, so that
        # a call that runs nothing leaves the stored experiment as it was.
        on_run = {k: attrs[k] for k in IDENTITY}
        attrs.update({k: stored_attrs[k] for k in IDENTITY if k in stored_attrs})
        attrs["algorithm_history"] = json.dumps(changes[:-1])
    if "quarantined" in stored_attrs:
        attrs["quarantined"] = stored_attrs["quarantined"]
    if "enqueued" in stored_attrs:
        attrs["enqueued"] = dump_queue(unconsumed(stored_attrs["enqueued"], events, space, name))
    return Reconciled(optimizer, attrs, events, stored_attrs, warm, on_run)


def _algorithm_history(name: str, stored_attrs: Mapping[str, Any], attrs: Mapping[str, Any],
                       events: list) -> tuple[list[dict[str, Any]], bool]:
    """The stored ``algorithm_history``, with the algorithm and seed of ``attrs`` appended when
    either changed; and whether they did."""
    changes = json.loads(stored_attrs.get("algorithm_history", "[]"))
    stored_seed = int(stored_attrs["seed"]) if "seed" in stored_attrs else None
    if not changes and stored_attrs.get("algorithm"):
        changes = [{"algorithm": stored_attrs["algorithm"],
                    "config": json.loads(stored_attrs.get("algorithm_config", "{}")), "seed": stored_seed,
                    "from_trial": 0}]
    current = {"algorithm": attrs["algorithm"], "config": json.loads(attrs["algorithm_config"]),
               "seed": int(attrs["seed"])}
    if changes:
        last = changes[-1]
        # entries written before seeds were kept have none: the stored seed was theirs
        before = {"algorithm": last["algorithm"], "config": last["config"], "seed": last.get("seed", stored_seed)}
        if before == current:
            return changes, False
        logger.warning("%s: stored with algorithm %s %s and seed %s, continuing with %s %s and seed %s (kept in "
                       "the attr algorithm_history when a run starts)", name, before["algorithm"], before["config"],
                       before["seed"], current["algorithm"], current["config"], current["seed"])
    from_trial = max((e.trial + 1 for e in events if isinstance(e, TrialRecord)), default=0)
    changes.append({**current, "from_trial": from_trial})
    return changes, True


def unconsumed(raw: str, events: list, space: Space, name: str = "") -> list[dict[str, Any]]:
    """The stored queue of :meth:`~daskhpo.Experiment.enqueue` less the entries that ran.

    An entry ran when a stored trial numbered ``after`` or later (each trial counted once,
    entries in order) holds its parameters: the trial that took it finished before the
    attr was written again.  An entry that no longer fits the space is dropped, logged.

    Parameters
    ----------
    raw : str
        The attr ``enqueued`` (JSON: a list of ``{"params", "after"}``).
    events : list
        The stored events.
    space : Space
    name : str
        The experiment's name, for the log.
    """
    try:
        entries = json.loads(raw or "[]")
        entries = [{"params": dict(e["params"]), "after": int(e.get("after", 0))} for e in entries]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("%s: the stored queue of enqueued configurations cannot be read (%s): it is dropped", name, exc)
        return []
    finished = sorted((e for e in events if isinstance(e, TrialRecord)), key=lambda r: r.trial)
    used: set[int] = set()
    out = []
    for entry in entries:
        try:
            params = {n: space[n].validate(v) for n, v in entry["params"].items()}
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning("%s: enqueued configuration %s does not fit the space (%s): dropped", name,
                           entry["params"], exc)
            continue
        ran = next((r.trial for r in finished if r.trial >= entry["after"] and r.trial not in used
                    and all(n in r.params and r.params[n] == v for n, v in params.items())), None)
        if ran is None:
            out.append({"params": params, "after": entry["after"]})
        else:
            used.add(ran)
    if out:
        logger.info("%s: %d enqueued configuration(s) still to run", name, len(out))
    return out


def warm_start_trials(
    path: str | os.PathLike, space: Space, direction: str, objectives: Mapping[str, str]
) -> list[TrialRecord]:
    """The completed trials of the experiment stored at ``path``, as this space's warm start.

    In the order they finished there, renumbered from :data:`WARM_START_ID`, without lineage.

    Raises
    ------
    FileNotFoundError
        When nothing is stored at ``path``.
    ValueError
        For another set of parameters, direction or objectives, or a trial outside this space.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"warm_start: no experiment stored at {os.fspath(path)!r}")
    other, attrs, events = read_history(path)
    if set(other) != set(space):
        raise ValueError(
            f"warm_start {os.fspath(path)!r} has parameters {sorted(other)}, this space {sorted(space)}; "
            "a warm start needs the same parameter names"
        )
    other_direction = str(attrs.get("direction", "minimize"))
    if other_direction != direction:
        raise ValueError(f"warm_start {os.fspath(path)!r} was run with direction={other_direction!r}, "
                         f"this experiment with direction={direction!r}")
    if objectives_from_attrs(attrs) != dict(objectives):
        raise ValueError(f"warm_start {os.fspath(path)!r} has objectives {objectives_from_attrs(attrs) or 'one'}, "
                         f"this experiment {dict(objectives) or 'one'}")
    done = sorted((e for e in events if isinstance(e, TrialRecord) and e.ok), key=lambda r: r.seq)
    out = []
    for k, record in enumerate(done):
        try:
            params = space.validate(record.params)
        except ValueError as exc:
            raise ValueError(f"warm_start {os.fspath(path)!r}, trial {record.trial}: {exc}") from None
        out.append(record.replace(trial=WARM_START_ID + k, params=params, parent=None, checkpoint_from=None))
    logger.info("warm start from %s: %d completed trials", path, len(out))
    return out
