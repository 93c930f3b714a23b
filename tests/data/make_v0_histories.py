"""Wrote the histories ``*_v0.nc`` of this folder with daskhpo as of commit 25a81df, the last
version whose worker sent constraints and objective vectors among the metrics
(``constraint_<i>``, ``objective_<name>``), so that tests check that files of that version still
load.  Not run by the tests; ``PYTHONPATH=<old checkout> python make_v0_histories.py tests/data``.
"""
import os
import sys

import daskhpo
from daskhpo.engine import FakeExecutor
from daskhpo.records import TrialRecord
from daskhpo.store.journal import Journal

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
SPACE = {"x": "uniform(-2, 2)", "y": "uniform(-2, 2)"}

def constrained(x, y):
    daskhpo.report(1, objective=x + y)
    return {"objective": x + y, "constraints": [x - 0.5, y - 1.0], "aux": x * y}

path = os.path.join(out, "constrained_v0.nc")
for p in (path, path + ".journal"):
    if os.path.exists(p):
        os.remove(p)
exp = daskhpo.build_experiment("old", SPACE, seed=0, direction="maximize", storage=path)
exp.run(FakeExecutor(constrained, slots=1), max_trials=4)
exp.close()
# one more finished trial only in the journal (written after the last snapshot)
j = Journal(path)
j.append(TrialRecord(4, {"x": 1.0, "y": 0.0}, "completed", objective=1.0, metrics={"aux": 0.0},
                     seq=100, constraints=(0.5, -1.0)))
j.close()

def tradeoff(x, y):
    return {"error": x ** 2, "speed": -y, "memory": 3.0, "constraints": [x - 1.0]}

path = os.path.join(out, "objectives_v0.nc")
for p in (path, path + ".journal"):
    if os.path.exists(p):
        os.remove(p)
exp = daskhpo.build_experiment("oldmo", SPACE, seed=0, storage=path,
                               objectives={"error": "minimize", "speed": "maximize"})
exp.run(FakeExecutor(tradeoff, slots=1), max_trials=4)
exp.close()
