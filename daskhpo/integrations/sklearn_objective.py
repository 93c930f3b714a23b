"""The objective of a :class:`daskhpo.integrations.sklearn.SearchCV` trial: cross-validate one candidate.

It runs on a Dask worker: every fold of the candidate, one after the other, scored with each
metric; the metrics come back with the names of ``RandomizedSearchCV.cv_results_``.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples

__all__ = ["CrossValidate", "numeric_error_score"]

logger = logging.getLogger(__name__)


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


def _scores(scorers: Mapping[str, Any], estimator: Any, X: Any, y: Any) -> dict[str, float]:
    """Each metric's score (a scorer that returns a dict gives several)."""
    out: dict[str, float] = {}
    for name, scorer in scorers.items():
        value = scorer(estimator, X, y)
        if isinstance(value, Mapping):
            out.update({str(k): float(v) for k, v in value.items()})
        else:
            out[name] = float(value)
    return out


class CrossValidate:
    """The objective of one trial: fit and score the estimator on every split (on a worker).

    ``optimize`` names the metric whose mean test score is maximized; ``transforms`` map the
    searched values of some parameters (quantiles, seeds) to the estimator's values; a
    numeric ``error_score`` replaces the scores of a split whose fit or scoring failed (the
    trial then completes, with the count in the metric ``n_failed_splits``), else the error
    breaks the trial.
    """

    def __init__(self, estimator: Any, splits: list, scorers: Mapping[str, Any], return_train_score: bool,
                 *, optimize: str = "score", transforms: Mapping[str, Any] | None = None,
                 error_score: Any = np.nan) -> None:
        self.estimator, self.splits, self.scorers = estimator, splits, dict(scorers)
        self.return_train_score = return_train_score
        self.optimize, self.transforms = optimize, dict(transforms or {})
        self.error_score = error_score

    def _replaces_errors(self) -> bool:
        return numeric_error_score(self.error_score)

    def _split(self, X: Any, y: Any, fit_params: Mapping[str, Any], n_samples: int, train: np.ndarray,
               test: np.ndarray, params: Mapping[str, Any]) -> tuple[float, float, dict, dict | None]:
        """Fit on one split's training rows and score: fit time, score time, test and train scores."""
        estimator = clone(self.estimator).set_params(**clone(dict(params), safe=False))
        X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
        y_train = None if y is None else _safe_indexing(y, train)
        y_test = None if y is None else _safe_indexing(y, test)
        start = time.perf_counter()
        estimator.fit(X_train, y_train, **_fit_params_for(fit_params, n_samples, train))
        fit_time = time.perf_counter() - start
        start = time.perf_counter()
        test_row = _scores(self.scorers, estimator, X_test, y_test)
        score_time = time.perf_counter() - start
        train_row = _scores(self.scorers, estimator, X_train, y_train) if self.return_train_score else None
        return fit_time, score_time, test_row, train_row

    def __call__(self, daskhpo_data: tuple, **params: Any) -> dict[str, float]:
        X, y, fit_params = daskhpo_data
        params = {k: self.transforms[k](v) if k in self.transforms else v for k, v in params.items()}
        n_samples = _num_samples(X)
        test: list[dict[str, float] | None] = []
        train: list[dict[str, float] | None] = []
        fit_times: list[float] = []
        score_times: list[float] = []
        failed = 0
        for train_idx, test_idx in self.splits:
            start = time.perf_counter()
            try:
                fit_time, score_time, test_row, train_row = self._split(X, y, fit_params, n_samples, train_idx, test_idx, params)
            except Exception:
                if not self._replaces_errors():
                    raise
                logger.debug("a split failed; its scores are error_score=%r", self.error_score, exc_info=True)
                failed += 1
                fit_time, score_time, test_row, train_row = time.perf_counter() - start, 0.0, None, None
            fit_times.append(fit_time)
            score_times.append(score_time)
            test.append(test_row)
            train.append(train_row)
        names = next((list(row) for row in test if row is not None), list(self.scorers))
        fill = {n: float(self.error_score) for n in names}
        test_rows = [fill if row is None else row for row in test]
        train_rows = [fill if row is None else row for row in train] if self.return_train_score else []
        single = names == ["score"]
        if self.optimize not in names:
            raise ValueError(f"refit: {self.optimize!r} is not one of the scores {names}")
        result: dict[str, float] = {
            "mean_fit_time": float(np.mean(fit_times)),
            "std_fit_time": float(np.std(fit_times)),
            "mean_score_time": float(np.mean(score_times)),
            "std_score_time": float(np.std(score_times)),
            "n_failed_splits": float(failed),
        }
        for which, rows in (("test", test_rows), ("train", train_rows)):
            for name in names if rows else ():
                values = [row[name] for row in rows]
                key = "score" if single else name
                result.update({f"split{k}_{which}_{key}": v for k, v in enumerate(values)})
                result[f"mean_{which}_{key}"] = float(np.mean(values))
                result[f"std_{which}_{key}"] = float(np.std(values))
        # minimized; scores are greater-is-better
        result["objective"] = -result[f"mean_test_{'score' if single else self.optimize}"]
        return result


def numeric_error_score(error_score: Any) -> bool:
    return isinstance(error_score, numbers.Number) and not isinstance(error_score, bool) and not np.isnan(error_score)
