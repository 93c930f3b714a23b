"""scikit-learn: :class:`SearchCV`, a ``*SearchCV`` whose candidates daskhpo chooses.

It follows the conventions of :class:`~sklearn.model_selection.RandomizedSearchCV`
(``fit``, ``best_params_``, ``best_score_``, ``best_estimator_``, ``best_index_``,
``cv_results_`` with the same keys, delegated ``predict``/``predict_proba``/``score``/
``transform``, ``get_params``/``set_params``/``clone``, use inside a ``Pipeline``), but the
candidates come from a daskhpo algorithm (TPE by default) that learns from every finished
candidate, and each candidate (all its folds) runs as one trial on Dask, asynchronously:
when one finishes, the next is chosen at once.

>>> from sklearn.svm import SVC
>>> from daskhpo.sklearn import SearchCV
>>> search = SearchCV(SVC(), {"C": "loguniform(1e-2, 1e3)", "gamma": "loguniform(1e-4, 1e1)"},
...                   max_trials=30, cv=5)
>>> search.fit(X, y)                                           # doctest: +SKIP
>>> search.best_params_, search.best_score_                    # doctest: +SKIP
>>> search.experiment_.plot.regret().show()                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import time
import warnings
from collections.abc import Iterator, Mapping
from copy import deepcopy
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.exceptions import FitFailedWarning, NotFittedError
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _num_samples, check_is_fitted, indexable

from .engine import TooManyBrokenTrials
from .experiment import Experiment, build_experiment

__all__ = ["SearchCV"]

logger = logging.getLogger(__name__)


def _estimator_has(attr: str) -> Any:
    """Delegate ``attr`` to the best estimator (fitted) or the estimator (not yet)."""

    def check(self: SearchCV) -> bool:
        if not self.refit:
            raise AttributeError(
                f"This {type(self).__name__} was initialized with refit=False: {attr} is available "
                "only after refitting on the best parameters"
            )
        getattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator, attr)
        return True

    return check


def _fit_params_for(fit_params: Mapping[str, Any], n_samples: int, indices: np.ndarray) -> dict[str, Any]:
    """Sample-aligned fit parameters (``sample_weight``...) indexed like the training fold."""
    out = {}
    for name, value in fit_params.items():
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes, Mapping)) and _num_samples_or_none(value) == n_samples:
            out[name] = _safe_indexing(value, indices)
        else:
            out[name] = value
    return out


def _num_samples_or_none(value: Any) -> int | None:
    try:
        return _num_samples(value)
    except TypeError:
        return None


class _CrossValidate:
    """The objective of one trial: fit and score the estimator on every split (on a worker)."""

    def __init__(self, estimator: Any, splits: list, scorer: Any, return_train_score: bool) -> None:
        self.estimator, self.splits, self.scorer = estimator, splits, scorer
        self.return_train_score = return_train_score

    def __call__(self, daskhpo_data: tuple, **params: Any) -> dict[str, float]:
        X, y, fit_params = daskhpo_data
        n_samples = _num_samples(X)
        test_scores, train_scores, fit_times, score_times = [], [], [], []
        for train, test in self.splits:
            estimator = clone(self.estimator).set_params(**clone(params, safe=False))
            X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
            y_train = None if y is None else _safe_indexing(y, train)
            y_test = None if y is None else _safe_indexing(y, test)
            start = time.perf_counter()
            estimator.fit(X_train, y_train, **_fit_params_for(fit_params, n_samples, train))
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            test_scores.append(float(self.scorer(estimator, X_test, y_test)))
            score_times.append(time.perf_counter() - start)
            if self.return_train_score:
                train_scores.append(float(self.scorer(estimator, X_train, y_train)))
        result = {
            "objective": -float(np.mean(test_scores)),  # minimized; scores are greater-is-better
            "mean_test_score": float(np.mean(test_scores)),
            "std_test_score": float(np.std(test_scores)),
            "mean_fit_time": float(np.mean(fit_times)),
            "std_fit_time": float(np.std(fit_times)),
            "mean_score_time": float(np.mean(score_times)),
            "std_score_time": float(np.std(score_times)),
        }
        result.update({f"split{k}_test_score": s for k, s in enumerate(test_scores)})
        if self.return_train_score:
            result.update({f"split{k}_train_score": s for k, s in enumerate(train_scores)})
            result["mean_train_score"] = float(np.mean(train_scores))
            result["std_train_score"] = float(np.std(train_scores))
        return result


@contextlib.contextmanager
def _dask_client() -> Iterator[Any]:
    """The current Dask client, or a LocalCluster's for the duration."""
    from distributed import Client, LocalCluster, default_client

    try:
        current = default_client()
    except ValueError:
        current = None
    if current is not None:
        yield current
        return
    logger.info("No Dask client: starting a LocalCluster for this fit")
    with LocalCluster(threads_per_worker=1) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


class SearchCV(MetaEstimatorMixin, BaseEstimator):
    """Cross-validated hyperparameter search with a daskhpo algorithm, on Dask.

    Parameters
    ----------
    estimator : estimator
        A scikit-learn estimator (or ``Pipeline``); cloned for every fit.
    space : dict
        Parameter names (as in ``estimator.get_params()``, e.g. ``"svc__C"`` in a
        pipeline) to priors (``"loguniform(1e-3, 1e3)"``, ``daskhpo.choices([...])``...).
    algorithm : str, (str, dict) or Optimizer, default "tpe"
        The daskhpo algorithm (see ``daskhpo.optimizers.available()``).
    max_trials : int, default 50
        Candidates to cross-validate (completed ones; failed ones are reported, not counted).
    cv : int, cross-validation generator or iterable, default 5
        As in scikit-learn (stratified k-fold for classifiers given an int).
    scoring : str or callable, optional
        A single metric (greater is better), as in scikit-learn; default the
        estimator's ``score``.
    refit : bool, default True
        Refit the best candidate on the whole data (in this process) as ``best_estimator_``.
    n_workers : int, optional
        Candidates in flight; default the Dask workers' threads.
    random_state : int or RandomState, optional
        Seeds the algorithm (and nothing else: pass a seeded splitter as ``cv`` for
        reproducible folds with shuffling).
    storage : path, optional
        Keep the search's history there (and resume it: stored candidates count towards
        ``max_trials``; use a fresh path for new data).
    return_train_score : bool, default False
        Also score the training folds, as scikit-learn does.

    Attributes
    ----------
    cv_results_ : dict of numpy arrays
        One row per trial (failed ones included, with NaN scores), with the keys of
        ``RandomizedSearchCV.cv_results_``.
    best_index_, best_score_, best_params_ : int, float, dict
        The best candidate (highest mean test score).
    best_estimator_ : estimator
        With ``refit=True``: the estimator refitted on all the data with ``best_params_``.
    refit_time_ : float
        Seconds to refit.
    scorer_ : callable
    n_splits_ : int
    multimetric_ : bool
        Always ``False`` (one metric).
    experiment_ : daskhpo.Experiment
        The search's experiment: ``experiment_.history``, ``experiment_.plot.regret()``...

    Notes
    -----
    It runs on the current Dask client (``distributed.Client(...)`` or
    ``with client.as_current():``), else on a ``LocalCluster`` started for the fit.  Each
    trial holds all the folds of one candidate; inside it the folds run one after the other
    (use ``joblib.parallel_backend("dask")`` in your own objective with
    :meth:`daskhpo.Experiment.workon` to spread folds too).  The data are scattered to the
    cluster once per fit.
    """

    _required_parameters = ["estimator", "space"]

    def __init__(
        self,
        estimator: Any,
        space: Mapping[str, Any],
        *,
        algorithm: Any = "tpe",
        max_trials: int = 50,
        cv: Any = 5,
        scoring: Any = None,
        refit: bool = True,
        n_workers: int | None = None,
        random_state: Any = None,
        storage: Any = None,
        return_train_score: bool = False,
    ) -> None:
        self.estimator = estimator
        self.space = space
        self.algorithm = algorithm
        self.max_trials = max_trials
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.n_workers = n_workers
        self.random_state = random_state
        self.storage = storage
        self.return_train_score = return_train_score

    # -- tags: those of the estimator, as scikit-learn's searches do ---------------------
    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.estimator_type = sub.estimator_type
        tags.classifier_tags = deepcopy(sub.classifier_tags)
        tags.regressor_tags = deepcopy(sub.regressor_tags)
        tags.input_tags.pairwise = sub.input_tags.pairwise
        tags.input_tags.sparse = sub.input_tags.sparse
        return tags

    @property
    def _estimator_type(self) -> str | None:
        # scikit-learn < 1.6 reads this (is_classifier); later versions read the tags above
        return getattr(self.estimator, "_estimator_type", None)

    # -- fitting ------------------------------------------------------------------------
    def _check_parameters(self) -> None:
        if not isinstance(self.space, Mapping) or not self.space:
            raise ValueError(f"space must be a non-empty dict of parameter names to priors, got {self.space!r}")
        valid = set(self.estimator.get_params(deep=True))
        unknown = sorted(set(self.space) - valid)
        if unknown:
            raise ValueError(
                f"space: {unknown} are not parameters of {type(self.estimator).__name__}; "
                f"valid ones include {sorted(valid)[:12]}"
            )
        if isinstance(self.max_trials, bool) or not isinstance(self.max_trials, numbers.Integral) or self.max_trials < 1:
            raise ValueError(f"max_trials must be a positive integer, got {self.max_trials!r}")
        if self.n_workers is not None and (not isinstance(self.n_workers, numbers.Integral) or self.n_workers < 1):
            raise ValueError(f"n_workers must be a positive integer or None, got {self.n_workers!r}")
        if not isinstance(self.refit, (bool, np.bool_)):
            raise ValueError(f"refit must be True or False, got {self.refit!r}")
        if isinstance(self.scoring, (list, tuple, set, dict)):
            raise ValueError("scoring: SearchCV optimizes one metric; give a string or a callable")

    def _seed(self) -> int | None:
        if self.random_state is None:
            return None
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def fit(self, X: Any, y: Any = None, *, groups: Any = None, **fit_params: Any) -> SearchCV:
        """Search the space by cross-validation, then refit the best candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
        groups : array-like of shape (n_samples,), optional
            Group labels for group-aware splitters.
        **fit_params
            Passed to the estimator's ``fit`` (sample-aligned ones are split with the folds).

        Returns
        -------
        SearchCV
            ``self``.

        Raises
        ------
        ValueError
            For an invalid parameter, or when every candidate failed (the message holds the
            last error).
        """
        self._check_parameters()
        X, y, groups = indexable(X, y, groups)
        estimator = self.estimator
        cv = check_cv(self.cv, y, classifier=is_classifier(estimator))
        splits = [(np.asarray(train), np.asarray(test)) for train, test in cv.split(X, y, groups)]
        self.n_splits_ = len(splits)
        self.scorer_ = check_scoring(estimator, scoring=self.scoring)
        self.multimetric_ = False
        objective = _CrossValidate(estimator, splits, self.scorer_, bool(self.return_train_score))
        experiment = build_experiment(
            f"SearchCV({type(estimator).__name__})", dict(self.space), self.algorithm,
            storage=self.storage, seed=self._seed(),
        )
        with _dask_client() as client:
            # hash=False: a fresh key per fit (equal data scattered again must not share it)
            [data] = client.scatter([(X, y, dict(fit_params))], hash=False)
            try:
                experiment.workon(
                    objective, int(self.max_trials), client=client, n_workers=self.n_workers,
                    max_broken=int(self.max_trials), progress=False, daskhpo_data=data,
                )
            except TooManyBrokenTrials:
                if not any(r.status == "completed" for r in experiment.records()):
                    self._raise_all_failed(experiment, X, y, fit_params)
                logger.warning("SearchCV: stopped after too many failed candidates")
            finally:
                data.release()
        self.experiment_: Experiment = experiment
        self._store_results(experiment)
        if self.refit:
            best = clone(estimator).set_params(**clone(self.best_params_, safe=False))
            start = time.perf_counter()
            best.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
            self.best_estimator_ = best
            if hasattr(best, "feature_names_in_"):
                self.feature_names_in_ = best.feature_names_in_
        return self

    def _raise_all_failed(self, experiment: Experiment, X: Any, y: Any, fit_params: dict) -> None:
        """Every candidate failed: fit the last one on all the data here, so that its own
        exception (type, message, traceback) reaches the caller; else a ValueError."""
        trials = experiment.records()  # by trial id
        message = f"All {len(trials)} candidates failed; the last error: {_last_error(experiment, trials[-1].trial)}"
        estimator = clone(self.estimator).set_params(**clone(dict(trials[-1].params), safe=False))
        try:
            estimator.fit(X, y, **fit_params)
        except Exception as exc:
            raise exc from ValueError(message)
        raise ValueError(message)

    def _store_results(self, experiment: Experiment) -> None:
        trials = experiment.records()  # by trial id
        n = len(trials)
        failed = [t for t in trials if t.status != "completed"]
        if len(failed) == n:
            raise ValueError(
                f"All {n} candidates failed; the last one ({failed[-1].status}): "
                f"{_last_error(experiment, failed[-1].trial)}"
            )
        if failed:
            warnings.warn(
                f"{len(failed)} of {n} candidates failed (their scores are NaN in cv_results_); "
                f"the last error: {_last_error(experiment, failed[-1].trial)}",
                FitFailedWarning, stacklevel=3,
            )

        def column(name: str) -> np.ndarray:
            return np.array([float(t.metrics.get(name, np.nan)) if t.status == "completed" else np.nan for t in trials])

        results: dict[str, Any] = {}
        for name in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
            results[name] = column(name)
        for param in self.space:
            values = np.empty(n, dtype=object)
            values[:] = [t.params[param] for t in trials]
            results[f"param_{param}"] = np.ma.MaskedArray(values, mask=np.zeros(n, dtype=bool))
        results["params"] = [dict(t.params) for t in trials]
        sets = ("test", "train") if self.return_train_score else ("test",)
        for which in sets:
            for k in range(self.n_splits_):
                results[f"split{k}_{which}_score"] = column(f"split{k}_{which}_score")
            results[f"mean_{which}_score"] = column(f"mean_{which}_score")
            results[f"std_{which}_score"] = column(f"std_{which}_score")
            if which == "test":
                results["rank_test_score"] = _rank(results["mean_test_score"])
        self.cv_results_ = results
        self.trial_ids_ = np.array([t.trial for t in trials])
        self.best_index_ = int(np.argmin(results["rank_test_score"]))
        self.best_score_ = float(results["mean_test_score"][self.best_index_])
        self.best_params_ = dict(results["params"][self.best_index_])

    # -- delegation to the best estimator ----------------------------------------------
    def _fitted_best(self, what: str) -> Any:
        check_is_fitted(self, "best_params_")
        if not self.refit:
            raise NotFittedError(f"{what} needs refit=True")
        return self.best_estimator_

    def score(self, X: Any, y: Any = None, **params: Any) -> float:
        """The score of ``best_estimator_`` on ``X``, ``y`` with the search's scorer."""
        return float(self.scorer_(self._fitted_best("score"), X, y, **params))

    @available_if(_estimator_has("predict"))
    def predict(self, X: Any) -> Any:
        """``best_estimator_.predict(X)``."""
        return self._fitted_best("predict").predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        """``best_estimator_.predict_proba(X)``."""
        return self._fitted_best("predict_proba").predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> Any:
        """``best_estimator_.predict_log_proba(X)``."""
        return self._fitted_best("predict_log_proba").predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        """``best_estimator_.decision_function(X)``."""
        return self._fitted_best("decision_function").decision_function(X)

    @available_if(_estimator_has("score_samples"))
    def score_samples(self, X: Any) -> Any:
        """``best_estimator_.score_samples(X)``."""
        return self._fitted_best("score_samples").score_samples(X)

    @available_if(_estimator_has("transform"))
    def transform(self, X: Any) -> Any:
        """``best_estimator_.transform(X)``."""
        return self._fitted_best("transform").transform(X)

    @available_if(_estimator_has("inverse_transform"))
    def inverse_transform(self, X: Any) -> Any:
        """``best_estimator_.inverse_transform(X)``."""
        return self._fitted_best("inverse_transform").inverse_transform(X)

    @property
    def classes_(self) -> np.ndarray:
        """Class labels of ``best_estimator_`` (classifiers, ``refit=True``)."""
        _estimator_has("classes_")(self)
        return self.best_estimator_.classes_

    @property
    def n_features_in_(self) -> int:
        """Number of features seen by ``best_estimator_``."""
        try:
            check_is_fitted(self, "best_params_")
        except NotFittedError as exc:
            raise AttributeError(f"{type(self).__name__} has no n_features_in_ before fit") from exc
        return self._fitted_best("n_features_in_").n_features_in_


def _rank(scores: np.ndarray) -> np.ndarray:
    """Rank 1 for the highest score; NaN scores rank last (as scikit-learn does)."""
    from scipy.stats import rankdata

    filled = np.where(np.isnan(scores), -np.inf, scores)
    return rankdata(-filled, method="min").astype(np.int32)


def _last_error(experiment: Experiment, trial_id: int) -> str:
    ds = experiment.history
    if "error" not in ds:
        return "(no error recorded)"
    text = str(ds["error"].sel(trial=trial_id).item()).strip()
    return text.splitlines()[-1] if text else "(no error recorded)"
