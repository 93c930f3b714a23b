"""The Orion talk's Dask example, as written, with ``orion.client`` replaced by ``daskhpo``.

An SVC cross-validated on scikit-learn's diabetes data (progression above the median), its
folds run through joblib's Dask backend on the cluster that runs the trials.  The talk runs
200 trials on 16 local workers, 8 in flight; the environment variables
``DASKHPO_EXAMPLE_TRIALS``, ``DASKHPO_EXAMPLE_WORKERS`` and ``DASKHPO_EXAMPLE_IN_FLIGHT``
scale it down (the tests run it with 6 trials on 2 workers).

    python examples/orion_talk_dask.py
"""

import os

import joblib
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

from daskhpo import create_experiment

MAX_TRIALS = int(os.environ.get("DASKHPO_EXAMPLE_TRIALS", 200))
N_WORKERS = int(os.environ.get("DASKHPO_EXAMPLE_WORKERS", 16))
IN_FLIGHT = int(os.environ.get("DASKHPO_EXAMPLE_IN_FLIGHT", 8))


def main(C, gamma):
    X, y = load_diabetes(return_X_y=True)
    y = (y > np.median(y)).astype(int)
    with joblib.parallel_backend("dask"):
        scores = cross_val_score(SVC(C=C, gamma=gamma), X, y, cv=5)
    return 1 - scores.mean()


if __name__ == "__main__":
    experiment = create_experiment(
        name="dask",
        max_trials=MAX_TRIALS,
        space={"C": "loguniform(1e-2, 1e3)", "gamma": "loguniform(1e-4, 1e1)"},
    )

    with experiment.tmp_executor("dask", n_workers=N_WORKERS):
        experiment.workon(main, n_workers=IN_FLIGHT)

    experiment.plot.regret().show()
    print((experiment.history.status == "completed").sum().item(), "trials completed")
    print(experiment.best)
