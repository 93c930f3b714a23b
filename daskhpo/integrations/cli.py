"""The ``daskhpo`` command line.

``daskhpo hunt -n NAME --storage PATH --max-trials N [options] -- COMMAND ... --lr~'loguniform(1e-5, 1)'``
    tunes any program (see :mod:`daskhpo.integrations.hunt`); running it again resumes.
``daskhpo submit SCRIPT.py [--walltime HH:MM:SS] [--max-restarts N] [...] [-- SBATCH_OPTION ...]``
    runs a search script as a chain of Slurm driver jobs (see :mod:`daskhpo.integrations.driver`).
``daskhpo status PATH``
    counts by status, the best trial and a table of the last and best trials; the driver
    sessions (which job runs the search, hand-overs).
``daskhpo list DIR``
    the experiments stored in a directory.
``daskhpo plot KIND PATH -o out.html``
    one of the plots of :mod:`daskhpo.viz.plot` as a standalone HTML file.
``daskhpo export tensorboard PATH LOGDIR``
    a stored experiment as TensorBoard event files (see :mod:`daskhpo.integrations.callbacks`).
``daskhpo dashboard PATH [--port N] [--address HOST]``
    serves the live dashboard of a stored history, following the file while another
    process runs the experiment, until Ctrl-C (or SIGTERM).

Bad input is reported as one line on standard error with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]

logger = logging.getLogger(__name__)

PLOTS = ("regret", "partial_dependencies", "parallel_coordinates", "importance", "timeline", "intermediate", "pareto")


def _max_broken(text: str) -> str | int | None:
    """``--max-broken``: ``auto``, ``none`` or a non-negative integer."""
    if text.strip().lower() in ("auto", "none"):
        return None if text.strip().lower() == "none" else "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected auto, none or a non-negative integer, got {text!r}")
    return value


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daskhpo", description="daskhpo: hyperparameter optimization on Dask")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    hunt = commands.add_parser(
        "hunt",
        help="tune a program: daskhpo hunt [options] -- COMMAND ... --lr~'loguniform(1e-5, 1)'",
        description=(
            "Run COMMAND as trials on Dask. Each argument --NAME~'PRIOR' defines a parameter and "
            "becomes --NAME VALUE in a trial's command. The program writes its result as JSON to the "
            "file in $DASKHPO_RESULTS, or prints a last line 'objective: <number>'; lines "
            "'report: {\"step\": 3, \"objective\": 0.4}' are intermediate results. Running the same "
            "command with the same --storage resumes."
        ),
        usage="daskhpo hunt -n NAME --storage PATH --max-trials N [options] -- COMMAND [ARG ...]",
    )
    hunt.add_argument("-n", "--name", required=True, help="the experiment's name")
    hunt.add_argument("--storage", required=True, help="the history file (netCDF), e.g. exp.nc; trials run in PATH.trials/<id>/")
    hunt.add_argument("--max-trials", type=int, required=True, help="finished trials of the experiment, stored ones included")
    hunt.add_argument("--algorithm", default=None, help="algorithm name (default: the stored one when resuming, else random); see daskhpo.optimizers.available()")
    hunt.add_argument(
        "--algorithm-config", default=None, metavar="JSON",
        help="the algorithm's configuration: with --algorithm, a JSON object of options; without, {\"NAME\": {options}}",
    )
    where = hunt.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="trials in parallel on a local cluster (default: the CPU count)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786")
    hunt.add_argument("--trial-timeout", type=float, default=None, metavar="S", help="seconds after which a trial's program is terminated")
    hunt.add_argument("--max-broken", type=_max_broken, default="auto", metavar="auto|none|N",
                      help="when broken trials stop the search: auto (default: only when the program itself looks "
                           "broken, never because some configurations fail), none (never), or N (once more than N "
                           "broke in this run)")
    hunt.add_argument("--seed", type=int, default=None, help="the algorithm's seed (default: a fresh one, stored)")
    hunt.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="a progress bar (default: in a terminal)")
    hunt.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")

    sub = commands.add_parser(
        "submit",
        help="run a search script as a chain of Slurm driver jobs",
        description=(
            "Queue a small CPU-only Slurm job that runs SCRIPT unchanged (its Dask scheduler, client and search "
            "live in the job; its worker jobs are submitted from it). Before the walltime the job drains the "
            "search and hands over to its successor, queued with --dependency=afterany, which resumes from the "
            "storage. Options after '--' go to sbatch."
        ),
        usage="daskhpo submit SCRIPT.py [--args='ARGS'] [--walltime HH:MM:SS] [--max-restarts N] [options] "
              "[-- SBATCH_OPTION ...]",
    )
    sub.add_argument("script", help="the search script, unchanged (the one that works on a login node)")
    sub.add_argument("--args", default="", metavar="'ARGS'", help="the script's arguments, one string split as a shell does (--args='--trials 500')")
    sub.add_argument("--walltime", default="01:00:00", help="each driver job's time limit (default 01:00:00)")
    sub.add_argument("--max-restarts", type=int, default=10, help="successor jobs at most (default 10)")
    sub.add_argument("--grace", type=float, default=120.0, metavar="S", help="seconds trials in flight get to finish after the hand-over signal (default 120)")
    sub.add_argument("--signal-before", type=int, default=None, metavar="S", help="seconds before the walltime of the hand-over signal (default grace + 180)")
    sub.add_argument("--partition", default=None, help="the driver job's partition (a small CPU one is enough)")
    sub.add_argument("--account", default=None, help="the driver job's account")
    sub.add_argument("--cpus", type=int, default=1, help="CPUs of the driver job (default 1)")
    sub.add_argument("--memory", default="4G", help="memory of the driver job (default 4G)")
    sub.add_argument("--job-name", default=None, help="default daskhpo-<script name>; 'scancel -n NAME' stops the chain")
    sub.add_argument("--log-directory", default="daskhpo-logs", help="where driver jobs write NAME-<jobid>.out (default daskhpo-logs)")
    sub.add_argument("--print", action="store_true", help="print the job script instead of submitting it")

    status = commands.add_parser("status", help="summary of a stored experiment", description="Counts by status, the best trial, the last and best trials.")
    status.add_argument("path", help="the experiment's storage path")
    status.add_argument("--rows", type=int, default=5, help="rows of each table (default 5)")

    lister = commands.add_parser("list", help="the experiments stored in a directory", description="The experiments (*.nc histories) in a directory.")
    lister.add_argument("directory", nargs="?", default=".", help="default: the current directory")

    plot = commands.add_parser("plot", help="write a plot to HTML", description="Write one plot of a stored experiment to a standalone HTML file.")
    plot.add_argument("kind", help=f"one of {', '.join(PLOTS)} (dashes allowed)")
    plot.add_argument("path", help="the experiment's storage path")
    plot.add_argument("-o", "--output", default=None, help="the file: .html, .png or .svg (default: KIND.html)")

    export = commands.add_parser("export", help="export a stored experiment", description="Export a stored experiment.")
    export.add_argument("format", choices=["tensorboard"], help="tensorboard: event files for TensorBoard's scalars and HParams dashboards")
    export.add_argument("path", help="the experiment's storage path")
    export.add_argument("logdir", help="the TensorBoard log directory to write")

    board = commands.add_parser(
        "dashboard",
        help="serve the live dashboard of a stored experiment",
        description="Serve the dashboard of a stored experiment, following the file as it grows.",
    )
    board.add_argument("path", help="the experiment's storage path (the .nc file given as storage=)")
    board.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    board.add_argument("--address", default="localhost", help="interface to listen on (default: localhost)")
    board.add_argument("--interval", type=float, default=0.5, help="seconds between reads of the file (default 0.5)")
    board.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if argv and argv[0] == "submit" and "--" in argv:  # what follows '--' goes to sbatch
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    if argv and argv[0] == "hunt":
        if "--" in argv:
            i = argv.index("--")
            argv, command = argv[:i], argv[i + 1 :]
        else:
            command = []
    parser = _parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run = {"hunt": _hunt, "submit": _submit, "status": _status, "list": _list, "plot": _plot, "export": _export, "dashboard": _dashboard}[args.command]
    try:
        return run(args, command) if args.command in ("hunt", "submit") else run(args)
    except UsageError as exc:
        print(f"daskhpo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a search's says what it stored (daskhpo.experiment.interrupt)
        print(f"daskhpo {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """``daskhpo status x.nc | head``: the reader closed the pipe; stop quietly, as ``cat`` does.

    Standard output is pointed at ``/dev/null`` so that the interpreter's own flush at exit
    does not fail again; the status is 128 + SIGPIPE, the status of a program the signal ended.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind sys.stdout (captured): nothing to flush
        pass
    return 128 + 13


# -- hunt ----------------------------------------------------------------------------------------


def _algorithm(args: argparse.Namespace) -> Any:
    config = None
    if args.algorithm_config is not None:
        try:
            config = json.loads(args.algorithm_config)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--algorithm-config is not JSON ({exc}): {args.algorithm_config!r}") from None
        if not isinstance(config, dict):
            raise UsageError(f"--algorithm-config must be a JSON object, got {args.algorithm_config!r}")
    if args.algorithm is not None:
        return args.algorithm if config is None else (args.algorithm, config)
    if config is None:
        return None  # random for a new experiment, the stored algorithm when resuming
    if len(config) != 1 or not isinstance(next(iter(config.values())), (dict, type(None))):
        raise UsageError('without --algorithm, --algorithm-config must be {"NAME": {options}}, e.g. {"tpe": {"n_initial": 5}}')
    ((name, options),) = config.items()
    return (name, options or {})


def _hunt(args: argparse.Namespace, command: list[str]) -> int:
    from ..engine import TooManyBrokenTrials
    from ..experiment import build_experiment
    from ..space import Space
    from .hunt import Command, check_command, parse_command

    if not command:
        raise UsageError("no command given after '--' (daskhpo hunt [options] -- COMMAND ... --x~'uniform(0, 1)')")
    if args.max_trials < 0:
        raise UsageError(f"--max-trials must be non-negative, got {args.max_trials}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.trial_timeout is not None and not args.trial_timeout > 0:
        raise UsageError(f"--trial-timeout must be positive, got {args.trial_timeout}")
    try:
        space, template = parse_command(command, cwd=os.getcwd())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not space:
        raise UsageError("the command defines no parameter; add arguments like --lr~'loguniform(1e-5, 1)'")
    storage = os.path.abspath(args.storage)
    if not os.path.isdir(os.path.dirname(storage)):
        raise UsageError(f"--storage: directory {os.path.dirname(storage)!r} does not exist")
    if not os.path.exists(storage) and os.path.exists(f"{storage}.journal"):
        raise UsageError(f"{storage}.journal exists without {storage}: another hunt may be writing it")
    try:  # the priors first: a malformed one is the first thing to say
        Space(space)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc).replace("\n", "; ")) from None
    try:  # a typo in the program or its script: said once, before any trial
        check_command(template, cwd=os.getcwd())
    except OSError as exc:
        raise UsageError(str(exc)) from None
    try:
        experiment = build_experiment(args.name, space, _algorithm(args), storage=storage, seed=args.seed)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(str(exc).splitlines()[0] if "\n" not in str(exc) else str(exc).replace("\n", "; ")) from None
    objective = Command(template, f"{storage}.trials", timeout=args.trial_timeout)
    with _client(args) as client:
        try:
            experiment.workon(objective, args.max_trials, client=client, max_broken=args.max_broken, progress=args.progress)
        except TooManyBrokenTrials as exc:
            print(f"daskhpo hunt: stopped: {str(exc).splitlines()[0]}", file=sys.stderr)
            _print_status(experiment.history, rows=3)
            return 1
    _print_status(experiment.history, rows=3)
    return 0


class _client:
    """The Dask client of ``hunt``: the scheduler's, or a LocalCluster's (closed after)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cluster = self.client = None

    def __enter__(self) -> Any:
        from distributed import Client, LocalCluster

        if self.args.scheduler:
            try:
                self.client = Client(self.args.scheduler, timeout="20s")
            except OSError as exc:
                raise UsageError(f"cannot connect to --scheduler {self.args.scheduler!r}: {exc}") from None
            return self.client
        workers = self.args.workers or os.cpu_count() or 1
        # Trials are subprocesses: worker threads in this process are enough, and start fast.
        # Every HTTP server on loopback: dashboard_address=None still serves on 0.0.0.0:8787
        # (and warns on stderr when that port is taken).
        loopback = "127.0.0.1:0"
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                                    dashboard_address=loopback, worker_dashboard_address=loopback)
        self.client = Client(self.cluster, set_as_default=False)
        return self.client

    def __exit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        from .hunt import terminate_all

        if self.cluster is not None:
            # Cancelled tasks keep running in the in-process workers: stop their programs.
            stopped = terminate_all()
            if stopped:  # after a Ctrl-C, the one line the interrupt prints says it all
                log = logger.info if kind is not None and issubclass(kind, KeyboardInterrupt) else logger.warning
                log("terminated %d running trial program(s)", stopped)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# -- submit --------------------------------------------------------------------------------------


def _submit(args: argparse.Namespace, sbatch_options: list[str] | None) -> int:
    import shlex

    from .driver import DriverJob

    try:
        script_args = shlex.split(args.args)
    except ValueError as exc:
        raise UsageError(f"--args is not a valid shell string ({exc}): {args.args!r}") from None
    try:
        job = DriverJob(args.script, script_args, walltime=args.walltime, max_restarts=args.max_restarts,
                        grace=args.grace, signal_before=args.signal_before, partition=args.partition,
                        account=args.account, cpus=args.cpus, memory=args.memory,
                        sbatch_options=sbatch_options or [], job_name=args.job_name,
                        log_directory=args.log_directory)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.print:
        print(job.job_script(), end="")
        return 0
    try:
        job_id = job.submit()
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
    print(f"submitted driver job {job_id} ({job.job_name}); 'squeue -n {job.job_name}' shows the chain, "
          f"'scancel -n {job.job_name}' stops it, its output: {job.log_directory}/{job.job_name}-{job_id}.out")
    return 0


# -- status, list, plot, export ----------------------------------------------------------------


def _load(path: str) -> Any:
    from ..experiment import load_experiment

    if not os.path.exists(path):
        raise UsageError(f"no experiment stored at {path!r}")
    try:
        return load_experiment(path)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path!r} is not a daskhpo history ({type(exc).__name__}: {exc})") from None


def _fmt(value: Any) -> str:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _table(ds: Any, trials: Sequence[int], params: Sequence[str]) -> str:
    from ..objectives import objectives_from_attrs, variable

    names = list(objectives_from_attrs(ds.attrs))
    objectives = [variable(n) for n in names] or ["objective"]
    columns = ["trial", "status", *(names or objectives), *params, "duration"]
    rows = [columns]
    for trial in trials:
        row = ds.sel(trial=trial)
        rows.append([str(trial), str(row["status"].item()), *(_fmt(row[o].values) for o in objectives),
                     *(_fmt(row[p].values) for p in params), _fmt(row["duration"].values)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows)


def _print_status(ds: Any, rows: int = 5) -> None:
    import numpy as np

    from ..records import direction_sign

    space = json.loads(ds.attrs.get("space", "{}"))
    params = [p for p in space if p in ds]
    n = ds.sizes.get("trial", 0)
    print(f"experiment {ds.attrs.get('name', '?')!r}: {n} trials, algorithm {ds.attrs.get('algorithm', '?')}")
    if n == 0:
        return
    statuses, counts = np.unique(ds["status"].values.astype(str), return_counts=True)
    print("  " + ", ".join(f"{s}: {c}" for s, c in zip(statuses, counts)))
    done = ds.where(ds["status"] == "completed", drop=True) if "completed" in statuses else None
    if "objectives" in ds.attrs:  # several objectives: the Pareto front, not a best trial
        _print_front(ds, params, rows)
        done = None
    if done is not None and done.sizes["trial"]:
        if "feasible" in done:
            done = done.where(done["feasible"].astype(bool), drop=True)
        sign = direction_sign(ds.attrs.get("direction"))
        order = done["trial"].values[np.argsort(sign * done["objective"].values, kind="stable")][:rows]
    if done is not None and done.sizes["trial"]:
        best = int(order[0])
        row = ds.sel(trial=best)
        values = ", ".join(f"{p}={_fmt(row[p].values)}" for p in params)
        print(f"best: trial {best}, objective {_fmt(row['objective'].values)} ({values})")
        print(f"\nbest {len(order)} trials:\n{_table(ds, [int(t) for t in order], params)}")
    last = [int(t) for t in ds["trial"].values[-rows:]]
    print(f"\nlast {len(last)} trials:\n{_table(ds, last, params)}")
    errors = [t for t in last if str(ds.sel(trial=t)["status"].item()) not in ("completed", "pruned")]
    for t in errors[-1:]:
        error = str(ds.sel(trial=t)["error"].item()).strip()
        marker = "CommandFailed: "
        lines = (error[error.rindex(marker) + len(marker):] if marker in error else error).splitlines()
        print(f"\ntrial {t} ({ds.sel(trial=t)['status'].item()}):\n  " + "\n  ".join(lines[-6:]))


def _print_front(ds: Any, params: Sequence[str], rows: int) -> None:
    from ..viz.plot import pareto_columns

    columns, front = pareto_columns(ds)
    trials = [int(t) for t in columns["trial"][front]]
    objectives = ", ".join(f"{n} ({d})" for n, d in json.loads(ds.attrs["objectives"]).items())
    print(f"Pareto front: {len(trials)} trial(s) of objectives {objectives}")
    if trials:
        shown = trials[:rows]
        more = f" (first {len(shown)})" if len(shown) < len(trials) else ""
        print(f"\nPareto front{more}:\n{_table(ds, shown, params)}")


def _status(args: argparse.Namespace) -> int:
    experiment = _load(args.path)
    _print_status(experiment.history, rows=args.rows)
    _print_sessions(experiment.attrs, args.path)
    return 0


def _print_sessions(attrs: dict, path: str) -> None:
    """The driver sessions (daskhpo.store.sessions): who runs the search, hand-overs so far."""
    from ..store.lock import StorageLock
    from ..store.sessions import summary

    found = summary(attrs)
    last = found["last"]
    if last is None:
        return
    print(f"\ndriver sessions: {found['sessions']}, hand-overs: {found['handovers']}, died: {found['died']}")
    where = f"job {last['job']} on {last['host']}" if last.get("job") else f"{last['host']}"
    where += f" (pid {last['pid']}" + (f", restart {last['restart']}" if last.get("restart") is not None else "") + ")"
    if last.get("end") is None:
        holder = StorageLock(path).holder()  # written by the holder of the lock; gone once released
        alive = holder is not None and (holder.get("host"), holder.get("pid")) == (last["host"], last["pid"])
        state = "running" if alive else "no end recorded (killed?)"
        print(f"  {state}: {where}, since {last['start']}")
    else:
        print(f"  last: {where}, {last['start']} to {last['end']}: {last['reason']}")
    if last.get("successor") and last.get("end") is None:
        print(f"  successor job: {last['successor']} (queued with --dependency=afterany: starts when this one ends)")
    elif last.get("successor") and str(last.get("reason")).startswith("drained"):
        print(f"  successor job: {last['successor']} (resumes the search)")


def _list(args: argparse.Namespace) -> int:
    import xarray as xr

    if not os.path.isdir(args.directory):
        raise UsageError(f"{args.directory!r} is not a directory")
    found = 0
    for entry in sorted(os.listdir(args.directory)):
        path = os.path.join(args.directory, entry)
        if not entry.endswith(".nc") or not os.path.isfile(path):
            continue
        try:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                if "space" not in ds.attrs:
                    continue
                name, n = ds.attrs.get("name", "?"), ds.sizes.get("trial", 0)
        except (OSError, ValueError):
            continue
        experiment = _load(path)  # with the journal: trials since the last snapshot
        ds = experiment.history
        n = ds.sizes.get("trial", 0)
        completed = int((ds["status"] == "completed").sum()) if n else 0
        if experiment.objectives:
            best_text = f"(Pareto front of {len(experiment.pareto_front)})"
        else:
            best = experiment.best
            best_text = "-" if best is None else f"{best['objective']:.6g}"
        print(f"{entry}  name={name!r}  trials={n}  completed={completed}  best={best_text}")
        found += 1
    if not found:
        print(f"no experiment in {args.directory}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    kind = args.kind.replace("-", "_")
    if kind not in PLOTS:
        raise UsageError(f"unknown plot {args.kind!r}; choose one of {', '.join(PLOTS)}")
    experiment = _load(args.path)
    from ..viz import plot as plots

    try:
        obj = getattr(plots, kind)(experiment)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = args.output or f"{kind}.html"
    from ..viz.export import ImageExportUnavailable

    try:
        if out.lower().endswith((".html", ".htm")):
            plots.save_html(obj, out, title=f"{experiment.name}: {kind}")
        else:
            plots.save(obj, out)
    except (ValueError, ImageExportUnavailable) as exc:
        raise UsageError(str(exc)) from None
    print(out)
    return 0


def _export(args: argparse.Namespace) -> int:
    experiment = _load(args.path)
    from .callbacks import export_tensorboard

    n = export_tensorboard(experiment, args.logdir)
    print(f"wrote {n} trials to {args.logdir} (tensorboard --logdir {args.logdir})")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from ..viz.dashboard import serve_history

    try:
        dashboard = serve_history(args.path, port=args.port, address=args.address, interval=args.interval)
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"daskhpo dashboard of {args.path} at {dashboard.url}  (Ctrl-C to stop)", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
