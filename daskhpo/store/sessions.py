"""Driver sessions: which process ran the search when, and why it stopped.

A *session* is one process writing a storage path: from :func:`daskhpo.build_experiment`
taking the storage's lock to the end of its last run.  Each is one dict in the JSON list
of the history's attr ``driver_sessions``, oldest first, kept across resumes:

``session``
    its number, from 1;
``host``, ``pid``
    where it ran;
``job``
    the Slurm job id (``SLURM_JOB_ID``), or ``None`` outside a job;
``restart``
    the driver job's place in its chain (0 for the first; see :mod:`daskhpo.integrations.driver`), or
    ``None`` outside a driver job; ``successor``: the job id of the successor it queued;
``start``, ``end``
    ISO 8601 times (UTC); ``end`` is ``None`` while it runs, and stays so for a session
    that died;
``reason``
    why it ended: ``"completed"`` (the run reached ``max_trials`` or the optimizer was
    exhausted), ``"nothing to do"`` (there was nothing left to run), ``"drained: <why>"``
    (a graceful stop, e.g. ``"drained: SIGUSR1"`` before a Slurm job's walltime: a
    *hand-over*), ``"interrupted"`` (Ctrl-C), ``"error: <exception>"``, ``"closed"`` (the
    experiment was closed without a run that ended it); or, written by the
    next session for one that never recorded an end, ``"died"`` (killed with SIGKILL, its
    node lost) or ``"superseded"`` (the same process opened the storage again).

The session's start is in the snapshot that :func:`~daskhpo.build_experiment` writes, so
a session that dies still leaves its trace.  Nothing here touches files: the experiment
stores the attr with its snapshots.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["ATTR", "begin", "end", "sessions", "summary", "HANDOVER"]

#: the history attr holding the sessions (JSON)
ATTR = "driver_sessions"
#: the prefix of the reason of a session that handed over (drained)
HANDOVER = "drained"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sessions(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sessions stored in ``attrs`` (empty for histories written before they existed).

    Parameters
    ----------
    attrs : mapping
        A history's attrs (:attr:`daskhpo.Experiment.attrs`).

    Returns
    -------
    list of dict
        One dict per session, oldest first: ``session``, ``host``, ``pid``, ``job``,
        ``restart``, ``successor``, ``start``, ``end`` and ``reason``.
    """
    try:
        found = json.loads(attrs.get(ATTR) or "[]")
    except ValueError:
        return []
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []


def begin(attrs: Mapping[str, Any]) -> str:
    """The attr value with a new session (this process) appended.

    A previous session without an end did not end cleanly: it is marked ``"died"``, or
    ``"superseded"`` when it is this very process (the storage opened again).

    Parameters
    ----------
    attrs : mapping
        The history's attrs before this session.

    Returns
    -------
    str
        The JSON to store under the sessions attr.
    """
    found = sessions(attrs)
    for old in found:
        if old.get("end") is None and old.get("reason") is None:
            old["reason"] = "superseded" if _this_process(old) else "died"
    restart = os.environ.get("DASKHPO_DRIVER_RESTART")
    found.append({
        "session": len(found) + 1,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "job": os.environ.get("SLURM_JOB_ID"),
        "restart": int(restart) if restart and restart.isdigit() else None,
        "successor": os.environ.get("DASKHPO_DRIVER_SUCCESSOR") or None,
        "start": _now(),
        "end": None,
        "reason": None,
    })
    return json.dumps(found)


def _this_process(session: Mapping[str, Any]) -> bool:
    """Whether ``session`` was started by this very process (same host and pid)."""
    return (session.get("host"), session.get("pid")) == (socket.gethostname(), os.getpid())


def end(attrs: Mapping[str, Any], reason: str, *, keep: bool = False) -> str:
    """The attr value with this process's last session ended now, for ``reason``.

    Parameters
    ----------
    attrs : mapping
        The history's attrs.
    reason : str
        Why the session ended (``"completed"``, ``"drained: SIGUSR1"``, ``"error: ..."``).
    keep : bool, default False
        Keep an end already recorded (``reason`` only for a session not ended yet).

    Returns
    -------
    str
        The JSON to store under the sessions attr.
    """
    found = sessions(attrs)
    for session in reversed(found):
        if _this_process(session):
            if not (keep and session.get("end") is not None):
                session["end"], session["reason"] = _now(), reason
            break
    return json.dumps(found)


def summary(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Counts and the latest session, for ``daskhpo status``.

    Parameters
    ----------
    attrs : mapping
        A history's attrs.

    Returns
    -------
    dict
        ``sessions`` (count), ``handovers`` (sessions that ended by a drain and were
        followed by another), ``died`` (count) and ``last`` (the latest session's dict, or
        ``None``).
    """
    found = sessions(attrs)
    handovers = sum(1 for s in found[:-1] if str(s.get("reason") or "").startswith(HANDOVER))
    return {
        "sessions": len(found),
        "handovers": handovers,
        "died": sum(1 for s in found if s.get("reason") == "died"),
        "last": found[-1] if found else None,
    }
