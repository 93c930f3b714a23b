"""scikit-learn: :class:`SearchCV`, a ``*SearchCV`` whose candidates daskhpo chooses.

It follows the conventions of :class:`~sklearn.model_selection.RandomizedSearchCV`
(``fit``, ``best_params_``, ``best_score_``, ``best_estimator_``, ``best_index_``,
``cv_results_`` with the same keys, delegated ``predict``/``predict_proba``/``score``/
``transform``, ``get_params``/``set_params``/``clone``, use inside a ``Pipeline``), but the
candidates come from a daskhpo algorithm (TPE by default) that learns from every finished
candidate, and each candidate (all its folds) runs as one trial on Dask, asynchronously:
when one finishes, the next is chosen at once.

>>> from sklearn.svm import SVC
>>> from daskhpo.integrations.sklearn import SearchCV
>>> from scipy.stats import loguniform
>>> search = SearchCV(SVC(), {"C": loguniform(1e-2, 1e3), "gamma": "loguniform(1e-4, 1e1)"},
...                   n_iter=30, cv=5, n_jobs=4)
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
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, indexable

from ..engine import TooManyBrokenTrials
from ..experiment import Experiment, build_experiment
from .session_cluster import session_client
from .sklearn_distributions import to_space
from .sklearn_objective import CrossValidate

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


class SearchCV(MetaEstimatorMixin, BaseEstimator):
    """Cross-validated hyperparameter search with a daskhpo algorithm, on Dask.

    A drop-in for :class:`~sklearn.model_selection.RandomizedSearchCV`: the same
    parameters (``param_distributions``, ``n_iter``, ``scoring``, ``n_jobs``, ``refit``,
    ``cv``, ``verbose``, ``random_state``, ``error_score``, ``return_train_score``) and
    attributes, with the candidates chosen by a daskhpo algorithm.

    Parameters
    ----------
    estimator : estimator
        A scikit-learn estimator (or ``Pipeline``); cloned for every fit.
    param_distributions : dict
        Parameter names (as in ``estimator.get_params()``, e.g. ``"svc__C"`` in a
        pipeline) to what ``RandomizedSearchCV`` takes (``scipy.stats`` distributions,
        lists of values) or daskhpo priors (``"loguniform(1e-3, 1e3)"``,
        ``daskhpo.choices([...])``); see :mod:`daskhpo.integrations.sklearn_distributions` for how each
        kind is searched.
    n_iter : int, default 10
        Candidates to cross-validate (completed ones; failed ones are reported, not counted).
    scoring : str, callable, list, tuple or dict, optional
        As in scikit-learn: one metric (a name, a callable scorer) or several (a list of
        names, a dict of names to scorers, a callable returning a dict).  Default the
        estimator's ``score``.  With several, the algorithm maximizes the one named by
        ``refit`` (the first one when ``refit`` is a callable or ``False``).
    n_jobs : int, optional
        Candidates in flight (each one runs all its folds, one after the other); ``None``
        or ``-1``: as many as the Dask workers' threads; ``-2``: one fewer, and so on.
    refit : bool, str or callable, default True
        Refit the best candidate on the whole data (in this process) as
        ``best_estimator_``.  With several metrics: the metric's name, or a callable that
        takes ``cv_results_`` and returns ``best_index_``, as in scikit-learn.
    cv : int, cross-validation generator or iterable, optional
        As in scikit-learn (default 5 folds, stratified for classifiers).
    verbose : int, default 0
        ``0``: silent; ``1``: a line saying how many fits, and a progress bar; ``2`` and
        more: also one line per candidate with its score (through :mod:`logging`, to
        standard error).
    random_state : int or RandomState, optional
        Seeds the algorithm (and nothing else: pass a seeded splitter as ``cv`` for
        reproducible folds with shuffling).
    error_score : "raise" or float, default np.nan
        A number: the score of a fold whose fit or scoring failed (the candidate completes,
        with a ``FitFailedWarning``).  ``np.nan``: the candidate fails (NaN scores, ranked
        last, ``FitFailedWarning``).  ``"raise"``: the first failure's exception is raised.
        When every candidate fails, the last one's exception is raised.
    return_train_score : bool, default False
        Also score the training folds, as scikit-learn does.
    algorithm : str, (str, dict) or Optimizer, default "tpe"
        The daskhpo algorithm (see ``daskhpo.optimizers.available()``).
    storage : path, optional
        Keep the search's history there (and resume it: stored candidates count towards
        ``n_iter``; use a fresh path for new data).
    space, max_trials, n_workers : optional
        Earlier names of ``param_distributions``, ``n_iter`` and ``n_jobs``; they still
        work (and take precedence when given).

    Attributes
    ----------
    cv_results_ : dict of numpy arrays
        One row per trial (failed ones included, with NaN scores), with the keys of
        ``RandomizedSearchCV.cv_results_`` (``mean_test_<name>``... with several metrics).
    best_index_, best_score_, best_params_ : int, float, dict
        The best candidate (highest mean test score of the ``refit`` metric).
        ``best_score_`` is not set when ``refit`` is a callable, as in scikit-learn.
    best_estimator_ : estimator
        With ``refit``: the estimator refitted on all the data with ``best_params_``.
    refit_time_ : float
        Seconds to refit.
    scorer_ : callable or dict
    n_splits_ : int
    multimetric_ : bool
    experiment_ : daskhpo.Experiment
        The search's experiment: ``experiment_.history``, ``experiment_.plot.regret()``...

    Notes
    -----
    It runs on the current Dask client (``distributed.Client(...)`` or
    ``with client.as_current():``), else on a local cluster started once for the Python
    session (one single-threaded worker process per core, reused by later fits, closed at
    exit; see :mod:`daskhpo.integrations.session_cluster`: no ``if __name__ == "__main__":`` needed).
    Each trial holds all the folds of one candidate.  The data are scattered to the
    cluster once per fit.
    """

    _required_parameters = ["estimator", "param_distributions"]

    def __init__(
        self,
        estimator: Any,
        param_distributions: Mapping[str, Any] | None = None,
        *,
        n_iter: int = 10,
        scoring: Any = None,
        n_jobs: int | None = None,
        refit: Any = True,
        cv: Any = None,
        verbose: int = 0,
        random_state: Any = None,
        error_score: Any = np.nan,
        return_train_score: bool = False,
        algorithm: Any = "tpe",
        storage: Any = None,
        space: Mapping[str, Any] | None = None,
        max_trials: int | None = None,
        n_workers: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.refit = refit
        self.cv = cv
        self.verbose = verbose
        self.random_state = random_state
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.algorithm = algorithm
        self.storage = storage
        self.space = space
        self.max_trials = max_trials
        self.n_workers = n_workers

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
    def _distributions(self) -> Mapping[str, Any]:
        if self.space is not None and self.param_distributions is not None:
            raise ValueError("give param_distributions or its earlier name space, not both")
        return self.param_distributions if self.space is None else self.space

    def _n_iter(self) -> int:
        n_iter = self.n_iter if self.max_trials is None else self.max_trials
        if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
            name = "n_iter" if self.max_trials is None else "max_trials"
            raise ValueError(f"{name} must be a positive integer, got {n_iter!r}")
        return int(n_iter)

    def _check_parameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate the parameters; the daskhpo space and the transforms of searched values."""
        distributions = self._distributions()
        space, transforms = to_space(distributions)
        valid = set(self.estimator.get_params(deep=True))
        unknown = sorted(set(space) - valid)
        if unknown:
            raise ValueError(
                f"param_distributions: {unknown} are not parameters of {type(self.estimator).__name__}; "
                f"valid ones include {sorted(valid)[:12]}"
            )
        self._n_iter()
        for name in ("n_jobs", "n_workers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value == 0):
                raise ValueError(f"{name} must be a non-zero integer or None, got {value!r}")
        if self.n_workers is not None and self.n_workers < 0:
            raise ValueError(f"n_workers must be positive, got {self.n_workers!r}")
        if not (isinstance(self.refit, (bool, np.bool_, str)) or callable(self.refit)):
            raise ValueError(f"refit must be True, False, a metric's name or a callable, got {self.refit!r}")
        if not (self.error_score == "raise" or (isinstance(self.error_score, numbers.Number) and not isinstance(self.error_score, bool))):
            raise ValueError(f"error_score must be 'raise' or a number, got {self.error_score!r}")
        if isinstance(self.verbose, bool) or not isinstance(self.verbose, numbers.Integral):
            raise ValueError(f"verbose must be an integer, got {self.verbose!r}")
        return space, transforms

    def _scorers(self) -> tuple[dict[str, Any], bool]:
        """The scorers by name, and whether there are several metrics (scikit-learn's rules)."""
        scoring = self.scoring
        if isinstance(scoring, (list, tuple, set, frozenset)):
            names = list(scoring)
            if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                raise ValueError(f"scoring: a list must hold distinct metric names, got {scoring!r}")
            return {n: check_scoring(self.estimator, scoring=n) for n in names}, True
        if isinstance(scoring, Mapping):
            if not scoring or not all(isinstance(n, str) for n in scoring):
                raise ValueError(f"scoring: a dict must map metric names to scorers, got {scoring!r}")
            return {n: check_scoring(self.estimator, scoring=s) for n, s in scoring.items()}, True
        return {"score": check_scoring(self.estimator, scoring=scoring)}, False

    def _optimized_metric(self, scorers: Mapping[str, Any], multimetric: bool) -> str:
        if not multimetric:
            # a callable scorer may return a dict of metrics: refit names the one to optimize
            return self.refit if isinstance(self.refit, str) and callable(self.scoring) else "score"
        if isinstance(self.refit, str):
            if self.refit not in scorers:
                raise ValueError(f"refit={self.refit!r} is not one of the metrics of scoring: {sorted(scorers)}")
            return self.refit
        if self.refit is True:
            raise ValueError(
                "refit: with several metrics, give the name of the one to select the best candidate "
                f"by ({sorted(scorers)}), a callable, or False"
            )
        return next(iter(scorers))

    def _seed(self) -> int | None:
        if self.random_state is None:
            return None
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _in_flight(self, client: Any) -> int | None:
        n_jobs = self.n_jobs if self.n_workers is None else self.n_workers
        if n_jobs is None or n_jobs > 0:
            return n_jobs
        threads = sum(client.nthreads().values()) or 1
        return max(1, threads + 1 + int(n_jobs))  # -1: all threads, -2: all but one (as joblib)

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
        space, transforms = self._check_parameters()
        scorers, multimetric = self._scorers()
        optimize = self._optimized_metric(scorers, multimetric)
        X, y, groups = indexable(X, y, groups)
        estimator = self.estimator
        cv = check_cv(self.cv, y, classifier=is_classifier(estimator))
        splits = [(np.asarray(train), np.asarray(test)) for train, test in cv.split(X, y, groups)]
        self.n_splits_ = len(splits)
        self.scorer_ = scorers if multimetric else scorers["score"]
        self.multimetric_ = multimetric
        self._transforms = transforms
        n_iter = self._n_iter()
        objective = CrossValidate(estimator, splits, scorers, bool(self.return_train_score), optimize=optimize,
                                   transforms=transforms, error_score=self.error_score)
        experiment = build_experiment(
            f"SearchCV({type(estimator).__name__})", space, self.algorithm,
            storage=self.storage, seed=self._seed(),
        )
        client = session_client()
        n_in_flight = self._in_flight(client)
        with _verbose_logging(self.verbose):
            if self.verbose >= 1:
                logger.info("Fitting %d folds for each of %d candidates, totalling %d fits",
                            self.n_splits_, n_iter, self.n_splits_ * n_iter)
            callbacks = [_CandidateLogger(optimize, self._params)] if self.verbose >= 2 else None
            # hash=False: a fresh key per fit (equal data scattered again must not share it)
            [data] = client.scatter([(X, y, dict(fit_params))], hash=False)
            try:
                # a candidate fails for its parameters, not its worker: no quarantine; with
                # error_score="raise" the first failure ends the search
                experiment.workon(
                    objective, n_iter, client=client, n_workers=n_in_flight, quarantine_after=None,
                    max_broken=0 if self.error_score == "raise" else n_iter, progress=self.verbose >= 1,
                    callbacks=callbacks, daskhpo_data=data,
                )
            except TooManyBrokenTrials:
                if self.error_score == "raise":
                    self._raise_failure(experiment, X, y, fit_params, which="first")
                if not any(t.status == "completed" for t in experiment.records()):
                    self._raise_failure(experiment, X, y, fit_params, which="last")
                logger.warning("SearchCV: stopped after too many failed candidates")
            finally:
                data.release()
        self.experiment_: Experiment = experiment
        if self.error_score == "raise" and any(t.status != "completed" for t in experiment.records()):
            self._raise_failure(experiment, X, y, fit_params, which="first")
        self._store_results(experiment, scorers, multimetric, optimize)
        if self.refit:
            best = clone(estimator).set_params(**clone(self.best_params_, safe=False))
            start = time.perf_counter()
            best.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
            self.best_estimator_ = best
            if hasattr(best, "feature_names_in_"):
                self.feature_names_in_ = best.feature_names_in_
        return self

    def _params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's parameters as the estimator gets them (searched quantiles and seeds mapped)."""
        transforms = getattr(self, "_transforms", {})
        return {k: transforms[k](v) if k in transforms else v for k, v in params.items()}

    def _raise_failure(self, experiment: Experiment, X: Any, y: Any, fit_params: dict, which: str) -> None:
        """A candidate failed and it must be said: fit it on all the data here, so that its
        own exception (type, message, traceback) reaches the caller; else a ValueError."""
        failed = [t for t in experiment.records() if t.status != "completed"]  # by trial id
        trial = failed[0] if which == "first" else failed[-1]
        n = len(experiment.records())
        message = (
            f"All {n} candidates failed; the last error: {_last_error(experiment, trial.trial)}" if which == "last"
            else f"A candidate failed (error_score='raise'): {_last_error(experiment, trial.trial)}"
        )
        estimator = clone(self.estimator).set_params(**clone(self._params(trial.params), safe=False))
        try:
            estimator.fit(X, y, **fit_params)
        except Exception as exc:
            raise exc from ValueError(message)
        raise ValueError(message)

    def _store_results(self, experiment: Experiment, scorers: Mapping[str, Any], multimetric: bool, optimize: str) -> None:
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
        partly = sum(1 for t in trials if t.status == "completed" and t.metrics.get("n_failed_splits", 0) > 0)
        if partly:
            warnings.warn(
                f"{partly} of {n} candidates had folds that failed; their scores are error_score={self.error_score!r}",
                FitFailedWarning, stacklevel=3,
            )

        def column(name: str) -> np.ndarray:
            return np.array([float(t.metrics.get(name, np.nan)) if t.status == "completed" else np.nan for t in trials])

        completed = next(t for t in trials if t.status == "completed")
        if not multimetric and "mean_test_score" not in completed.metrics:
            multimetric = self.multimetric_ = True  # a callable scorer returned a dict
        if multimetric:
            names = sorted({k[len("mean_test_"):] for k in completed.metrics if k.startswith("mean_test_")},
                           key=lambda k: (k not in scorers, list(scorers).index(k) if k in scorers else 0, k))
        else:
            names = ["score"]
        results: dict[str, Any] = {}
        for name in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
            results[name] = column(name)
        params = [self._params(t.params) for t in trials]
        for param in self._distributions():
            values = np.empty(n, dtype=object)
            values[:] = [p.get(param) for p in params]
            results[f"param_{param}"] = np.ma.MaskedArray(values, mask=np.zeros(n, dtype=bool))
        results["params"] = params
        sets = ("test", "train") if self.return_train_score else ("test",)
        for name in names:
            for which in sets:
                for k in range(self.n_splits_):
                    results[f"split{k}_{which}_{name}"] = column(f"split{k}_{which}_{name}")
                results[f"mean_{which}_{name}"] = column(f"mean_{which}_{name}")
                results[f"std_{which}_{name}"] = column(f"std_{which}_{name}")
                if which == "test":
                    results[f"rank_test_{name}"] = _rank(results[f"mean_test_{name}"])
        self.cv_results_ = results
        self.trial_ids_ = np.array([t.trial for t in trials])
        if callable(self.refit):
            index = self.refit(results)
            if not isinstance(index, numbers.Integral) or isinstance(index, bool) or not 0 <= index < n:
                raise IndexError(f"refit: the callable returned {index!r}, not an index of cv_results_ (0 to {n - 1})")
            self.best_index_ = int(index)
            self.best_params_ = dict(params[self.best_index_])
            return
        if multimetric and not self.refit:
            return  # scikit-learn sets no best_* then: which metric would say "best"?
        self.best_index_ = int(np.argmin(results[f"rank_test_{optimize}"]))
        self.best_score_ = float(results[f"mean_test_{optimize}"][self.best_index_])
        self.best_params_ = dict(params[self.best_index_])

    # -- delegation to the best estimator ----------------------------------------------
    def _fitted_best(self, what: str) -> Any:
        check_is_fitted(self, "best_params_")
        if not self.refit:
            raise NotFittedError(f"{what} needs refit=True")
        return self.best_estimator_

    def score(self, X: Any, y: Any = None, **params: Any) -> float:
        """The score of ``best_estimator_`` on ``X``, ``y`` with the search's scorer (the
        ``refit`` metric's with several)."""
        best = self._fitted_best("score")
        scorer = self.scorer_
        if self.multimetric_:
            if not isinstance(self.refit, str):
                raise ValueError("score: with several metrics and refit a callable, say which metric: refit='name'")
            if isinstance(self.scorer_, Mapping):
                scorer = self.scorer_[self.refit]
            else:  # a callable scorer that returns a dict
                return float(self.scorer_(best, X, y, **params)[self.refit])
        return float(scorer(best, X, y, **params))

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


@contextlib.contextmanager
def _verbose_logging(verbose: int) -> Iterator[None]:
    """With ``verbose``, show this module's INFO lines on standard error for the fit, unless
    the application has configured logging itself (then its handlers decide)."""
    configured = logging.getLogger().handlers or logger.handlers
    if verbose < 1 or configured:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[SearchCV] %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _CandidateLogger:
    """A workon callback (``verbose >= 2``): one line per finished candidate."""

    def __init__(self, metric: str, params: Any) -> None:
        self.metric, self.params = metric, params

    def __call__(self, record: dict) -> None:
        metrics = record.get("metrics") or {}
        key = f"mean_test_{self.metric}"
        score = metrics.get(key, float("nan"))
        logger.info("candidate %s %s: %s=%.5g params=%s", record.get("trial"),
                    record.get("status"), key, score, self.params(record.get("params") or {}))


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
