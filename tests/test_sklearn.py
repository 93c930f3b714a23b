"""daskhpo.sklearn.SearchCV against scikit-learn's conventions and RandomizedSearchCV."""

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
from daskhpo.sklearn import SearchCV


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


@pytest.mark.slow  # starts its own LocalCluster
def test_without_a_client_it_starts_a_local_cluster(iris, tmp_path):
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
