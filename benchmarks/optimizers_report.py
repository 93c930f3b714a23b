"""Tables from the JSON lines of ``benchmarks/optimizers.py`` runs, merged from several files.

The optimizer benchmark prints one JSON object per run; long studies run in pieces (one
process per group of algorithms, a larger budget for many trials in flight), and this script
gathers them into Markdown tables: median [25th, 75th percentile] regret per problem and
algorithm for each (trials in flight, budget), the ratio in flight / sequential at the same
budget, the best daskhpo algorithm against the best Optuna sampler, and ``auto`` against the best
daskhpo algorithm.  Where a (problem, algorithm, in flight, budget, seed) appears in several
files, the last one read wins (a rerun with newer code replaces the older rows).

Usage::

    python benchmarks/optimizers_report.py /tmp/h20-bench/*.jsonl > tables.md
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable

import numpy as np

DASKHPO = ["random", "sobol", "tpe", "gp", "cmaes", "evolution", "auto"]
#: the algorithms that search (random and sobol are baselines), for "best daskhpo"
SEARCHERS = ["tpe", "gp", "cmaes", "evolution"]
OPTUNA = ["optuna-tpe", "optuna-gp", "optuna-cmaes", "optuna-qmc"]


def read_runs(paths: Iterable[str]) -> dict[tuple, dict]:
    """The runs by (problem, algorithm, in_flight, budget, seed); later files replace earlier rows."""
    runs: dict[tuple, dict] = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("kind") != "run":
                    continue
                runs[(r["problem"], r["algorithm"], r["in_flight"], r.get("budget", 100), r["seed"])] = r
    return runs


def summarize(runs: dict[tuple, dict]) -> dict[tuple, dict]:
    """Median and quartiles of the regret per (problem, algorithm, in_flight, budget)."""
    groups: dict[tuple, list[dict]] = {}
    for key, r in runs.items():
        groups.setdefault(key[:4], []).append(r)
    out = {}
    for key, rs in groups.items():
        q25, q50, q75 = np.percentile([r["regret"] for r in rs], [25, 50, 75])
        out[key] = {"median": float(q50), "q25": float(q25), "q75": float(q75), "seeds": len(rs),
                    "commits": sorted({r.get("commit", "?") for r in rs}),
                    "seconds": float(np.median([r["seconds"] for r in rs]))}
    return out


def ratio(a: float, b: float) -> float:
    """``a / b`` for regrets, 1 where both are 0."""
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


#: a cell with fewer seeds says how many
FULL_SEEDS = 10


def _cell(s: dict | None) -> str:
    if s is None:
        return "–"
    seeds = "" if s["seeds"] >= FULL_SEEDS else f" ({s['seeds']})"
    return f"{s['median']:.3g} [{s['q25']:.2g}, {s['q75']:.2g}]{seeds}"


def _by_setting(title: str, settings: list[tuple[int, int]]) -> list[str]:
    """A table's heading and header with one column per (in flight, budget)."""
    return ["", f"### {title}", "", "| problem | " + " | ".join(f"{f} in flight, {b}" for f, b in settings) + " |",
            "|---|" + "---|" * len(settings)]


def _medians(summary: dict[tuple, dict], names: list[str], key: tuple) -> dict[str, float]:
    """The median regret of each of ``names`` at ``key`` = (problem, in_flight, budget), where run."""
    p, f, b = key
    return {a: summary[(p, a, f, b)]["median"] for a in names if (p, a, f, b) in summary}


def tables(summary: dict[tuple, dict], problems: list[str], algorithms: list[str]) -> str:
    settings = sorted({(k[2], k[3]) for k in summary}, key=lambda s: (s[1], s[0]))
    lines: list[str] = []
    for flight, budget in settings:
        algs = [a for a in algorithms if any(k[1] == a and k[2:4] == (flight, budget) for k in summary)]
        seeds = sorted({s["seeds"] for k, s in summary.items() if k[2:4] == (flight, budget)})
        lines += ["", f"### {flight} in flight, {budget} trials (seeds per cell: {', '.join(map(str, seeds))})", "",
                  "| problem | " + " | ".join(algs) + " |", "|---|" + "---|" * len(algs)]
        for p in problems:
            lines.append(f"| {p} | " + " | ".join(_cell(summary.get((p, a, flight, budget))) for a in algs) + " |")
    for flight, budget in settings:
        if flight == 1 or (1, budget) not in settings:
            continue
        algs = [a for a in algorithms if (any(k[1] == a and k[2:4] == (flight, budget) for k in summary))]
        lines += ["", f"### ratio {flight} in flight / sequential, {budget} trials (medians)", "",
                  "| problem | " + " | ".join(algs) + " |", "|---|" + "---|" * len(algs)]
        for p in problems:
            cells = []
            for a in algs:
                par, seq = summary.get((p, a, flight, budget)), summary.get((p, a, 1, budget))
                cells.append("–" if par is None or seq is None else f"{ratio(par['median'], seq['median']):.2f}")
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += _by_setting("best daskhpo algorithm vs best Optuna sampler (median regret; ratio = ours / Optuna's)",
                         settings)
    for p in problems:
        cells = []
        for f, b in settings:
            ours, peer = _medians(summary, SEARCHERS, (p, f, b)), _medians(summary, OPTUNA, (p, f, b))
            if not ours or not peer:
                cells.append("–")
                continue
            a, o = min(ours, key=ours.get), min(peer, key=peer.get)
            r = ratio(ours[a], peer[o])
            verdict = "**win**" if r <= 1 else "loss"
            cells.append(f"{a} {ours[a]:.3g} vs {o.removeprefix('optuna-')} {peer[o]:.3g}: ×{r:.2f} {verdict}")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    if any(k[1] == "auto" for k in summary):
        lines += _by_setting("auto vs the best daskhpo algorithm (ratio of medians; goal ≤ 1.2)", settings)
        for p in problems:
            cells = []
            for f, b in settings:
                auto = summary.get((p, "auto", f, b))
                ours = _medians(summary, SEARCHERS, (p, f, b))
                if auto is None or not ours:
                    cells.append("–")
                    continue
                best = min(ours, key=ours.get)
                r = ratio(auto["median"], ours[best])
                cells.append(f"×{r:.2f} (best {best})" + ("" if r <= 1.2 else " **MISSED**"))
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
    commits = sorted({(k[1], c) for k, s in summary.items() for c in s["commits"]})
    lines += ["", "Commits: " + "; ".join(f"{a} {c}" for a, c in commits)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="JSON lines of benchmarks/optimizers.py (later files win)")
    parser.add_argument("--problems", nargs="*", default=None, help="the problems, in order (default: all seen)")
    parser.add_argument("--algorithms", nargs="*", default=DASKHPO + OPTUNA)
    args = parser.parse_args(argv)
    summary = summarize(read_runs(args.files))
    problems = args.problems or sorted({k[0] for k in summary})
    print(tables(summary, problems, args.algorithms))


if __name__ == "__main__":
    main()
