"""Orion's Python-API example, as written, with ``orion.client`` replaced by ``daskhpo``.

The objective returns Orion's list of results (one entry of type ``"objective"``); the
algorithm's seed sits in its configuration, as Orion has it.  ``DASKHPO_EXAMPLE_TRIALS``
changes the number of trials (default 20).

    python examples/orion_rosenbrock.py
"""

import os

from daskhpo import create_experiment


def rosenbrock(x, noise=None):
    """Evaluate partial information of a quadratic."""
    y = x - 34.56789
    z = 4 * y**2 + 23.4

    return [{"name": "objective", "type": "objective", "value": z}]


if __name__ == "__main__":
    experiment = create_experiment(
        name="orion_rosenbrock",
        space={"x": "uniform(-50, 50)"},
        algorithms={"random": {"seed": 1}},
    )

    experiment.workon(rosenbrock, max_trials=int(os.environ.get("DASKHPO_EXAMPLE_TRIALS", 20)))

    print(experiment.best)
