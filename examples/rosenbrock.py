"""Random search on the Rosenbrock function, on a LocalCluster started for the run.

Run it twice: the second run resumes from ``random-rosenbrock.nc`` and adds 20 trials.

    python examples/rosenbrock.py [--storage PATH] [--trials N]
"""

import argparse
import logging

import daskhpo


def rosenbrock(x, y, a=1, b=100):
    return (a - x) ** 2 + b * (y - x**2) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="random-rosenbrock.nc")
    parser.add_argument("--trials", type=int, default=20, help="trials to add to the stored ones")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)

    experiment = daskhpo.build_experiment(
        "random-rosenbrock",
        space={"x": "uniform(-5, 5)", "y": "uniform(-5, 5)"},
        algorithm="random",
        storage=args.storage,
        seed=0,
    )
    done = int((experiment.history["status"] == "completed").sum())
    experiment.workon(rosenbrock, max_trials=done + args.trials)
    print(f"{experiment.history.sizes['trial']} trials stored in {args.storage}")
    print(f"best: {experiment.best}")


if __name__ == "__main__":
    main()
