"""The ``daskhpo`` command line.

``daskhpo dashboard PATH [--port N] [--address HOST]`` serves the live dashboard of a
stored history, following the file while another process runs the experiment, until
Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daskhpo", description="daskhpo: hyperparameter optimization on Dask")
    commands = parser.add_subparsers(dest="command", required=True)
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
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .dashboard import serve_history

    try:
        dashboard = serve_history(args.path, port=args.port, address=args.address, interval=args.interval)
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        print(f"daskhpo dashboard: error: {exc}", file=sys.stderr)
        return 2
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
