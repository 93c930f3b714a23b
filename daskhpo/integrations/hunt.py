"""Run any program as a trial: the objective behind ``daskhpo hunt``.

A command line such as ``python train.py --epochs 10 --lr~'loguniform(1e-5, 1)'`` holds
*parameter arguments* ``--NAME~PRIOR``; :func:`parse_command` splits it into a search space
and a :class:`Command`, a picklable objective that Dask workers call with the trial's
parameters.  Each call

* runs the command with every parameter argument replaced by ``--NAME VALUE``, in the
  trial's own working directory ``<root>/<trial id>/`` (standard output and error are kept
  there as ``stdout.txt`` and ``stderr.txt``);
* reads its standard output line by line while it runs: a line
  ``report: {"step": 3, "objective": 0.41, ...}`` goes through :func:`daskhpo.report`, so
  early-stopping algorithms (ASHA, Hyperband) can stop the program (it is terminated, with
  its process group);
* returns its result: the JSON the program wrote to the file named by the environment
  variable ``DASKHPO_RESULTS`` (see :func:`daskhpo.integrations.client.report_results`) or, failing
  that, the number on a last standard output line ``objective: <number>``.

A non-zero exit status, a missing or malformed result, or a run past ``timeout`` raises
:class:`CommandFailed` with the tail of the program's standard error, so the trial is
recorded ``broken`` with that text in the history's ``error``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Command", "CommandFailed", "parse_command", "check_command", "terminate_all", "RESULTS_ENV", "TRIAL_ENV", "TRIAL_DIR_ENV"]

logger = logging.getLogger(__name__)

#: environment variable naming the file where the program writes its result (JSON)
RESULTS_ENV = "DASKHPO_RESULTS"
#: environment variable holding the trial's id
TRIAL_ENV = "DASKHPO_TRIAL"
#: environment variable holding the trial's working directory
TRIAL_DIR_ENV = "DASKHPO_TRIAL_DIR"

_PARAM = re.compile(r"^(-{1,2})([A-Za-z_][A-Za-z0-9_.-]*)~(.+)$", re.DOTALL)
_REPORT = re.compile(r"^\s*report:\s*(\{.*\})\s*$")
_OBJECTIVE = re.compile(r"^\s*objective:\s*(\S+)\s*$")
_TAIL_LINES = 20


#: programs of trials running in this process (terminated by terminate_all and at exit)
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def terminate_all() -> int:
    """Terminate the programs of every trial running in this process; returns how many.

    Called at interpreter exit, and by ``daskhpo hunt`` when it stops (Ctrl-C, too many
    broken trials): cancelling a Dask task does not stop the thread running it, so the
    programs of in-process workers would otherwise outlive the search.
    """
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        _kill(proc, grace=2.0)
    return len(live)


atexit.register(terminate_all)


class CommandFailed(RuntimeError):
    """The trial's program exited with an error, produced no result, or ran too long."""


@dataclass(frozen=True)
class _Param:
    flag: str  # e.g. "--lr"
    name: str  # the parameter's name in the space, e.g. "lr"


def parse_command(
    argv: Sequence[str], cwd: str | os.PathLike | None = None
) -> tuple[dict[str, str], list[str | _Param]]:
    """Split a command line into a search space and a command template.

    Parameters
    ----------
    argv : sequence of str
        The program and its arguments.  ``--NAME~PRIOR`` (or ``-NAME~PRIOR``) defines the
        parameter ``NAME`` (dashes and dots in ``NAME`` become underscores in the space)
        with the prior ``PRIOR`` (e.g. ``loguniform(1e-5, 1)``).

    Returns
    -------
    space : dict
        Parameter names to prior strings, in command-line order.
    template : list
        The arguments, parameter arguments replaced by placeholders (see :class:`Command`).

    Raises
    ------
    ValueError
        For an empty command, a command that starts with a parameter, or a parameter
        defined twice.
    """
    argv = list(argv)
    if not argv:
        raise ValueError("no command given after '--'")
    space: dict[str, str] = {}
    template: list[str | _Param] = []
    for i, arg in enumerate(argv):
        match = _PARAM.match(arg)
        if match is None:
            if cwd is not None and arg and not os.path.isabs(arg) and os.path.exists(os.path.join(cwd, arg)):
                arg = os.path.abspath(os.path.join(cwd, arg))
            template.append(arg)
            continue
        if i == 0:
            raise ValueError(f"the command must start with a program, got the parameter {arg!r}")
        dashes, flag, prior = match.groups()
        name = re.sub(r"[-.]", "_", flag)
        if name in space:
            raise ValueError(f"parameter {name!r} is defined twice in the command")
        space[name] = prior.strip()
        template.append(_Param(dashes + flag, name))
    return space, template


#: programs that run a script named by their first argument (``python train.py``)
_INTERPRETERS = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|bash|sh|dash|zsh|ksh|Rscript|julia|node|perl|ruby|lua|php)$")
#: options of Python that take the next argument as their value
_PYTHON_OPTION_VALUES = {"-X", "-W", "--check-hash-based-pycs"}
#: options after which no script file follows (the code is inline, or a module)
_NO_SCRIPT = {"-c", "-m", "-e", "-E", "--eval", "-r", "-"}


def _script_argument(program: str, args: Sequence[str | _Param]) -> str | None:
    """The script an interpreter is asked to run (``train.py`` of ``python -u train.py``), if any."""
    skip = False
    for arg in args:
        if isinstance(arg, _Param):
            return None  # a parameter before any script: no script to check
        if skip:
            skip = False
            continue
        if arg in _NO_SCRIPT:
            return None
        if arg.startswith("-"):
            skip = program.startswith(("python", "pypy")) and arg in _PYTHON_OPTION_VALUES
            continue
        return arg
    return None


def check_command(template: Sequence[str | _Param], cwd: str | os.PathLike | None = None) -> None:
    """Check that the program of a command exists, and the script it runs, before any trial.

    Parameters
    ----------
    template : sequence
        The command as :func:`parse_command` returns it.
    cwd : path, optional
        The directory relative paths are taken from (default: the current one).

    Raises
    ------
    FileNotFoundError
        One line naming the program or the script that is missing (``python trian.py``).
    PermissionError
        For a program file that is not executable.
    """
    if not template or not isinstance(template[0], str):
        raise FileNotFoundError("the command has no program")
    cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
    program = template[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"program {program!r} does not exist")
        if not os.access(path, os.X_OK):
            raise PermissionError(f"program {program!r} is not executable (chmod +x {shlex.quote(program)})")
    elif shutil.which(program) is None:
        raise FileNotFoundError(f"program {program!r} is not found on PATH")
    name = os.path.basename(program)
    if _INTERPRETERS.match(name):
        script = _script_argument(name, template[1:])
        if script is not None and not os.path.isfile(os.path.join(cwd, script)):
            raise FileNotFoundError(f"{name}: script {script!r} does not exist in {cwd}")


def _format(value: Any) -> str:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _kill(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate the process and its process group; kill it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: str, lines: int = _TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()[-20000:]
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Command:
    """A program run as a trial; call it with the trial's parameters.

    Parameters
    ----------
    template : list
        From :func:`parse_command`: arguments and parameter placeholders.
    root : path
        Each trial runs in ``root/<trial id>/`` (created), a fresh directory per trial.
    timeout : float, optional
        Seconds after which the program is terminated and the trial fails.
    env : dict, optional
        Extra environment variables of the program.

    Notes
    -----
    The program's environment also holds ``DASKHPO_RESULTS`` (where to write its result),
    ``DASKHPO_TRIAL`` (the trial's id) and ``DASKHPO_TRIAL_DIR`` (its working directory),
    and ``CUDA_VISIBLE_DEVICES`` set to the trial's own GPU(s) when its resources ask for
    GPUs (:func:`daskhpo.current_trial_devices`).
    """

    def __init__(
        self,
        template: Sequence[str | _Param],
        root: str | os.PathLike,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.template = list(template)
        self.root = os.path.abspath(os.fspath(root))
        self.timeout = timeout
        self.env = dict(env or {})

    def __repr__(self) -> str:
        return f"Command({shlex.join(self.argv_for({p.name: '<' + p.name + '>' for p in self.params}))!r})"

    @property
    def params(self) -> list[_Param]:
        """The parameter placeholders of the command."""
        return [a for a in self.template if isinstance(a, _Param)]

    def argv_for(self, params: Mapping[str, Any]) -> list[str]:
        """The command line of a trial with these parameters."""
        argv: list[str] = []
        for arg in self.template:
            if isinstance(arg, _Param):
                argv += [arg.flag, _format(params[arg.name])]
            else:
                argv.append(arg)
        return argv

    def __call__(self, **params: Any) -> Any:
        from ..reporting import current_trial, current_trial_devices

        trial = current_trial()
        label = str(trial) if trial is not None else f"direct-{uuid.uuid4().hex[:8]}"
        workdir = os.path.join(self.root, label)
        os.makedirs(workdir, exist_ok=True)
        results = os.path.join(workdir, "results.json")
        stderr_path = os.path.join(workdir, "stderr.txt")
        if os.path.exists(results):  # an earlier attempt of this trial
            os.remove(results)
        env = {**os.environ, **self.env, RESULTS_ENV: results, TRIAL_DIR_ENV: workdir, TRIAL_ENV: label}
        devices = current_trial_devices()
        if devices is not None:  # the GPU(s) assigned to this trial (workon's resources): the program's own
            env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices
        argv = self.argv_for(params)
        logger.debug("trial %s: running %s in %s", label, shlex.join(argv), workdir)
        with open(stderr_path, "wb") as err, open(os.path.join(workdir, "stdout.txt"), "w", encoding="utf-8") as out:
            try:
                proc = subprocess.Popen(
                    argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=err, text=True, errors="replace", bufsize=1, start_new_session=True,
                )
            except OSError as exc:
                raise CommandFailed(f"cannot run {shlex.join(argv)}: {exc}") from None
            with _LIVE_LOCK:
                _LIVE.add(proc)
            try:
                last = self._follow(proc, out, label, stderr_path)
            finally:
                _kill(proc)  # on pruning, a time-out or an interrupt; a no-op once it exited
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
        code = proc.returncode
        if code != 0:
            reason = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise CommandFailed(f"{shlex.join(argv)} {reason}; stderr ends with:\n{_tail(stderr_path)}")
        if os.path.exists(results) and os.path.getsize(results) > 0:
            with open(results, encoding="utf-8") as fh:
                text = fh.read()
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise CommandFailed(f"${RESULTS_ENV} ({results}) does not hold JSON ({exc}): {text[:200]!r}") from None
        match = _OBJECTIVE.match(last or "")
        if match is not None:
            try:
                return float(match.group(1))
            except ValueError:
                pass
        raise CommandFailed(
            f"{shlex.join(argv)} gave no result: it wrote nothing to ${RESULTS_ENV} and its last line on "
            f"stdout is not 'objective: <number>' (it is {last!r}); stderr ends with:\n{_tail(stderr_path)}"
        )

    def _follow(self, proc: subprocess.Popen, out: Any, label: str, stderr_path: str) -> str | None:
        """Relay reports until the program exits; return its last non-empty stdout line."""
        from ..reporting import report

        lines: queue.SimpleQueue = queue.SimpleQueue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, name=f"daskhpo-trial-{label}-stdout", daemon=True)
        reader.start()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        last = None
        while True:
            try:
                # Short waits keep this thread interruptible (time-outs, Ctrl-C).
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    _kill(proc)
                    raise CommandFailed(
                        f"trial exceeded the time-out of {self.timeout:g} s and was terminated; stderr ends with:\n"
                        f"{_tail(stderr_path)}"
                    ) from None
                continue
            if line is None:
                break
            out.write(line)
            out.flush()
            text = line.strip()
            if not text:
                continue
            last = text
            match = _REPORT.match(text)
            if match is None:
                continue
            try:
                values = json.loads(match.group(1))
                step = values.pop("step")
                objective = values.pop("objective", None)
            except (json.JSONDecodeError, KeyError, AttributeError) as exc:
                logger.warning("trial %s: ignoring malformed report line %r (%s)", label, text, exc)
                continue
            report(step, objective, **values)  # may raise TrialPruned: _kill in the caller
        proc.wait()
        reader.join(1.0)
        return last

