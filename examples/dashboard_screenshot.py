"""Run a small search with the live dashboard and save a PNG of the page (the README's image).

It runs a random search of a toy training objective on an in-process LocalCluster with
``workon(..., dashboard=True)``, opens the dashboard in Debian's Chromium (Playwright's
Python package with the system browser: ``apt-get install chromium``, ``pip install
playwright``; no browser download) and writes a screenshot.

    python examples/dashboard_screenshot.py [--output docs/dashboard.png] [--trials 150]
"""

import argparse
import logging
import math
import random
import tempfile
import threading
import time
from pathlib import Path

import daskhpo

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def train(lr, layers, activation, dropout):
    """A stand-in for a training run: a few hundred ms, a validation loss, now and then a crash."""
    time.sleep(random.uniform(0.05, 0.4))
    if lr > 0.5 and layers > 6:
        raise FloatingPointError("loss diverged")
    loss = 0.3 * (math.log10(lr) + 2.5) ** 2 + 0.05 * abs(layers - 4) + 0.4 * (dropout - 0.2) ** 2
    loss += {"relu": 0.0, "tanh": 0.15, "gelu": 0.05}[activation]
    return {"objective": loss + random.gauss(0, 0.02), "accuracy": 1 / (1 + loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="docs/dashboard.png")
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    logging.getLogger("bokeh").setLevel(logging.WARNING)
    from distributed import Client, LocalCluster
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        experiment = daskhpo.build_experiment(
            "toy-training",
            space={
                "lr": "loguniform(1e-5, 1)",
                "layers": "randint(1, 8)",
                "activation": "choices(['relu', 'tanh', 'gelu'])",
                "dropout": "uniform(0, 0.6)",
            },
            algorithm="random",
            storage=Path(tmp) / "toy.nc",
            seed=3,
        )
        with LocalCluster(n_workers=4, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            board = experiment.dashboard()
            run = threading.Thread(
                target=experiment.workon, args=(train, args.trials), kwargs={"client": client, "dashboard": True, "max_broken": 1000}
            )
            run.start()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1290, "height": 980})
                page.goto(board.url)
                page.wait_for_selector("canvas")
                run.join()
                page.wait_for_function(
                    "n => Bokeh.documents[0].get_model_by_name('trials_table').data.trial.length >= n",
                    arg=args.trials,
                )
                time.sleep(1.0)  # the last redraw
                Path(args.output).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.output, full_page=True)
                browser.close()
            board.stop()
    print(f"wrote {args.output} ({len(experiment.history.trial)} trials, best {experiment.best['objective']:.4g})")


if __name__ == "__main__":
    main()
