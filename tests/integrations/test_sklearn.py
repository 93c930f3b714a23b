"""daskhpo.integrations.sklearn.SearchCV against scikit-learn's conventions and RandomizedSearchCV."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import check_estimator

import daskhpo
from daskhpo.integrations.sklearn import SearchCV


@pytest.fixture
def current(client):
    with client.as_current():
        yield client


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def test_sklearn_estimator_checks(current):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            SearchCV(LogisticRegression(), {"C": "loguniform(1e-2, 1e2)"}, max_trials=2, cv=2, random_state=0),
            on_fail=None,
        )
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert failed == []
    assert sum(r["status"] == "passed" for r in results) >= 50


@pytest.mark.parametrize("return_train_score", [False, True])
def test_cv_results_have_the_keys_of_randomized_search(current, iris, return_train_score):
    X, y = iris
    cv = KFold(3, shuffle=True, random_state=0)
    ours = SearchCV(LogisticRegression(max_iter=500), {"C": "loguniform(1e-2, 1e2)"}, max_trials=4, cv=cv,
                    random_state=0, return_train_score=return_train_score).fit(X, y)
    theirs = RandomizedSearchCV(LogisticRegression(max_iter=500), {"C": loguniform(1e-2, 1e2)}, n_iter=4, cv=cv,
                                random_state=0, return_train_score=return_train_score).fit(X, y)
    assert sorted(ours.cv_results_) == sorted(theirs.cv_results_)
    results = ours.cv_results_
    assert all(len(v) == 4 for v in results.values())
    assert results["rank_test_score"][ours.best_index_] == 1
    assert ours.best_score_ == pytest.approx(results["mean_test_score"].max())
    assert ours.best_params_ == results["params"][ours.best_index_]
    # the mean test score is what cross_val_score gives for those parameters
    expected = cross_val_score(LogisticRegression(max_iter=500, **ours.best_params_), X, y, cv=cv).mean()
    assert ours.best_score_ == pytest.approx(expected)
    assert ours.n_splits_ == 3 and ours.multimetric_ is False
    history = ours.experiment_.history
    np.testing.assert_allclose(history["mean_test_score"].values, results["mean_test_score"])


def test_pipeline_keys_delegation_and_clone(current, iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), SVC())
    search = SearchCV(pipe, {"svc__C": "loguniform(1e-2, 1e2)", "svc__kernel": "choices(['rbf', 'linear'])"},
                      max_trials=5, cv=3, scoring="accuracy", random_state=1)
    assert clone(search).get_params()["space"] == search.space
    assert search.set_params(max_trials=4).max_trials == 4
    assert search.get_params()["estimator__svc__C"] == 1.0
    search.fit(X, y)
    assert set(search.best_params_) == {"svc__C", "svc__kernel"}
    assert search.best_estimator_.get_params()["svc__C"] == search.best_params_["svc__C"]
    np.testing.assert_array_equal(search.predict(X), search.best_estimator_.predict(X))
    assert search.score(X, y) == pytest.approx((search.predict(X) == y).mean())
    assert search.decision_function(X).shape == (150, 3)
    assert not hasattr(search, "predict_proba")  # SVC without probability=True has none
    np.testing.assert_array_equal(search.classes_, [0, 1, 2])
    assert search.n_features_in_ == 4 and search.refit_time_ > 0
    assert len(search.experiment_.history["trial"]) == 4

    # a transformer, in a pipeline of its own
    reducer = SearchCV(PCA(), {"n_components": "randint(1, 3)"}, max_trials=2, cv=2).fit(X)
    assert reducer.transform(X).shape == (150, reducer.best_params_["n_components"])
    with pytest.raises(ValueError, match="not parameters of Pipeline"):
        SearchCV(pipe, {"C": "uniform(0, 1)"}).fit(X, y)


class Fragile(ClassifierMixin, BaseEstimator):
    """Fails to fit for ``c > 0.5``."""

    def __init__(self, c=0.0):
        self.c = c

    def fit(self, X, y):
        if self.c > 0.5:
            raise RuntimeError("c too large")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_failed_candidates_rank_last_and_all_failed_raises(current, iris):
    X, y = iris
    with pytest.warns(FitFailedWarning, match="c too large"):
        search = SearchCV(Fragile(), {"c": "uniform(0, 1)"}, max_trials=4, cv=2, algorithm="random",
                          random_state=3).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    failed = np.isnan(scores)
    assert failed.any() and (~failed).sum() == 4
    assert (search.cv_results_["rank_test_score"][failed] > search.cv_results_["rank_test_score"][~failed].max()).all()
    with pytest.raises(RuntimeError, match="c too large"):  # the estimator's own error
        SearchCV(Fragile(), {"c": "uniform(0.6, 1)"}, max_trials=2, cv=2).fit(X, y)


@pytest.fixture
def session_cluster():
    from daskhpo.integrations.session_cluster import close_session_cluster

    yield
    close_session_cluster()


@pytest.mark.slow  # starts the session's LocalCluster
def test_without_a_client_it_starts_a_local_cluster(iris, tmp_path, session_cluster):
    X, y = iris
    search = SearchCV(LogisticRegression(max_iter=300), {"C": "loguniform(1e-2, 1e2)"}, max_trials=2, cv=2,
                      storage=tmp_path / "search.nc").fit(X, y)
    assert len(daskhpo.load_experiment(tmp_path / "search.nc").history["trial"]) == 2
    assert search.best_score_ > 0.8


class Recorder(ClassifierMixin, BaseEstimator):
    """Checks that sample-aligned fit parameters are split with the folds."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y, sample_weight=None, note="x"):
        assert sample_weight is not None and len(sample_weight) == len(X) and note == "kept"
        assert np.all(sample_weight == X[:, 0])  # the rows that go with X's
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_fit_params_and_groups_follow_the_folds(current, iris):
    from sklearn.model_selection import GroupKFold

    X, y = iris
    X = X.copy()
    groups = np.arange(len(X)) % 3
    search = SearchCV(Recorder(), {"alpha": "uniform(0, 1)"}, max_trials=2, cv=GroupKFold(3), algorithm="random")
    search.fit(X, y, groups=groups, sample_weight=X[:, 0].copy(), note="kept")
    assert search.n_splits_ == 3 and not np.isnan(search.cv_results_["mean_test_score"]).any()


# -- a drop-in for RandomizedSearchCV -----------------------------------------------------------


def test_scipy_distributions_and_lists_become_priors():
    from scipy.stats import expon, norm, poisson, randint, uniform

    from daskhpo.integrations.sklearn_distributions import to_space

    space, transforms = to_space({
        "a": loguniform(1e-3, 1e2), "b": randint(1, 5), "c": uniform(2, 3), "d": norm(1, 2),
        "e": ["x", "y"], "f": "loguniform(1, 10)", "g": expon(scale=2), "h": poisson(3),
    })
    # scipy's randint excludes its high, daskhpo's includes it
    assert [str(space[k]) for k in "abcde"] == ["loguniform(0.001, 100.0)", "randint(1, 4)", "uniform(2.0, 5.0)",
                                                "normal(1.0, 2.0)", "choices(['x', 'y'])"]
    assert space["f"] == "loguniform(1, 10)"
    assert set(transforms) == {"g", "h"}  # searched as quantiles, mapped through the ppf
    assert transforms["g"](0.5) == pytest.approx(expon(scale=2).median())
    assert transforms["h"](0.5) == 3 and isinstance(transforms["h"](0.5), int)
    objects, transforms = to_space({"layers": [(10,), (20, 20)], "model": [None, SVC()]})
    assert str(objects["layers"]) == "choices([0, 1])" and transforms["layers"](1) == (20, 20)
    assert isinstance(transforms["model"](1), SVC)
    with pytest.raises(ValueError, match=r"param_distributions\['z'\]"):
        to_space({"z": object()})
    with pytest.raises(ValueError, match="list of dicts"):
        to_space([{"a": [1]}, {"a": [2]}])


def test_randomized_search_arguments_work_as_typed(current, iris):
    from scipy.stats import expon, randint

    X, y = iris
    search = SearchCV(
        LogisticRegression(), {"C": loguniform(1e-2, 1e2), "max_iter": randint(200, 400),
                               "solver": ["lbfgs", "newton-cg"], "tol": expon(scale=1e-3)},
        n_iter=5, n_jobs=2, cv=3, verbose=0, random_state=0, error_score=np.nan,
    ).fit(X, y)
    params = search.cv_results_["params"]
    assert len(params) == 5
    assert all(1e-2 <= p["C"] <= 1e2 and 200 <= p["max_iter"] <= 399 and p["solver"] in ("lbfgs", "newton-cg")
               and 0 < p["tol"] < 0.05 for p in params)
    assert isinstance(params[0]["max_iter"], int)
    # the estimator got the mapped values, not the quantiles the algorithm searched
    assert search.best_estimator_.tol == search.best_params_["tol"] < 0.05
    assert list(search.cv_results_["param_tol"]) == [p["tol"] for p in params]
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
        SearchCV(LogisticRegression(), {"C": [1, 2]}, n_jobs=0).fit(X, y)


def test_several_metrics_with_refit_by_name_or_callable(current, iris):
    X, y = iris
    cv = KFold(3, shuffle=True, random_state=0)
    scoring = ["accuracy", "f1_macro"]
    ours = SearchCV(LogisticRegression(max_iter=500), {"C": loguniform(1e-3, 1e2)}, n_iter=4, cv=cv, scoring=scoring,
                    refit="f1_macro", random_state=0, return_train_score=True).fit(X, y)
    theirs = RandomizedSearchCV(LogisticRegression(max_iter=500), {"C": loguniform(1e-3, 1e2)}, n_iter=4, cv=cv,
                                scoring=scoring, refit="f1_macro", random_state=0, return_train_score=True).fit(X, y)
    assert sorted(ours.cv_results_) == sorted(theirs.cv_results_)
    assert ours.multimetric_ and set(ours.scorer_) == set(scoring)
    assert ours.best_score_ == pytest.approx(np.nanmax(ours.cv_results_["mean_test_f1_macro"]))
    assert ours.score(X, y) == pytest.approx(ours.scorer_["f1_macro"](ours.best_estimator_, X, y))

    def lowest_c(results):
        return int(np.argmin([p["C"] for p in results["params"]]))

    by_callable = SearchCV(LogisticRegression(max_iter=500), {"C": loguniform(1e-3, 1e2)}, n_iter=3, cv=2,
                           scoring={"acc": "accuracy", "bal": "balanced_accuracy"}, refit=lowest_c).fit(X, y)
    assert by_callable.best_index_ == lowest_c(by_callable.cv_results_)
    assert not hasattr(by_callable, "best_score_") and "mean_test_bal" in by_callable.cv_results_
    with pytest.raises(ValueError, match="refit: with several metrics"):
        SearchCV(LogisticRegression(), {"C": [1.0]}, n_iter=1, scoring=scoring).fit(X, y)


def test_error_score_a_number_or_raise(current, iris):
    X, y = iris
    with pytest.warns(FitFailedWarning, match="error_score=-1"):
        search = SearchCV(Fragile(), {"c": "uniform(0, 1)"}, n_iter=6, cv=2, algorithm="random",
                          random_state=3, error_score=-1).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert not np.isnan(scores).any() and (scores == -1).any() and (scores > -1).any()
    with pytest.raises(RuntimeError, match="c too large"):
        SearchCV(Fragile(), {"c": "uniform(0, 1)"}, n_iter=6, cv=2, algorithm="random", random_state=3,
                 error_score="raise").fit(X, y)


def test_verbose_says_how_many_fits(current, iris, caplog):
    X, y = iris
    caplog.set_level("INFO", logger="daskhpo.integrations.sklearn")
    SearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0, 10.0]}, n_iter=3, cv=2, verbose=2).fit(X, y)
    text = caplog.text
    assert "Fitting 2 folds for each of 3 candidates, totalling 6 fits" in text
    assert text.count("mean_test_score=") == 3


def test_a_script_without_main_guard_reuses_one_cluster(tmp_path):
    """As a user runs it: `python script.py`, no `if __name__ == "__main__":`, no client."""
    import os
    import subprocess
    import sys

    script = tmp_path / "search.py"
    script.write_text(
        "from scipy.stats import loguniform\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from daskhpo.integrations.sklearn import SearchCV\n"
        "from daskhpo.integrations.session_cluster import session_client\n"
        "X, y = load_iris(return_X_y=True)\n"
        "for seed in range(2):\n"
        "    s = SearchCV(LogisticRegression(max_iter=300), {'C': loguniform(1e-2, 1e2)}, n_iter=2, cv=2,\n"
        "                 random_state=seed).fit(X, y)\n"
        "    print('scheduler', session_client().scheduler.address, round(s.best_score_, 2))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("scheduler")]
    assert len(lines) == 2 and lines[0][1] == lines[1][1]  # one cluster for both fits
    assert lines[0][1].startswith("tcp://127.0.0.1:")
    assert "Traceback" not in proc.stderr and "bootstrapping" not in proc.stderr


def test_a_scorer_returning_a_dict_and_failures_that_quarantine_no_worker(current, iris):
    X, y = iris

    def two_metrics(estimator, X, y):
        predicted = estimator.predict(X)
        return {"acc": float((predicted == y).mean()), "hits": float((predicted == y).sum())}

    search = SearchCV(LogisticRegression(max_iter=300), {"C": [0.001, 1.0, 100.0]}, n_iter=3, cv=2,
                      scoring=two_metrics, refit="acc").fit(X, y)
    assert search.multimetric_ and {"mean_test_acc", "rank_test_hits"} <= set(search.cv_results_)
    assert search.best_score_ == pytest.approx(np.max(search.cv_results_["mean_test_acc"]))
    assert search.score(X, y) == pytest.approx(two_metrics(search.best_estimator_, X, y)["acc"])
    with pytest.warns(FitFailedWarning):
        failing = SearchCV(Fragile(), {"c": "uniform(0.3, 1)"}, n_iter=4, cv=2, algorithm="random",
                           random_state=5).fit(X, y)
    assert np.isnan(failing.cv_results_["mean_test_score"]).sum() >= 2
    assert failing.experiment_.quarantined == []  # the parameters failed, not the workers
