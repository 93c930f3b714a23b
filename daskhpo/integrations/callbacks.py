"""Callbacks for :meth:`daskhpo.Experiment.workon`: code run on each finished trial.

A callback is any callable taking one argument, the finished trial's record as a dict: the
fields of :class:`~daskhpo.records.TrialRecord` under the same names (``trial`` (id),
``params``, ``status``, ``objective``, ``metrics`` (other metrics), ``constraints``,
``values`` (several objectives), ``started``/``ended`` (seconds since the epoch, or
``None``), ``worker``, ``error``, ``attempts``, ...) and ``reports`` (the trial's
intermediate reports: ``(step, {metric: value})`` pairs in step order).  Callbacks run in the client process, after the trial is stored;
one that raises is logged and the search goes on.  A callback with a ``setup(experiment)``
method is given the experiment before the first trial (its name, storage, objectives: the
public API); one with a ``close()`` method is closed when ``workon`` returns.

>>> seen = []
>>> experiment.workon(fn, max_trials=10, callbacks=[seen.append])    # doctest: +SKIP

:class:`TensorBoard` writes each trial as a TensorBoard run; :func:`export_tensorboard` does
the same for a stored experiment (``daskhpo export tensorboard PATH LOGDIR``).  The event
files are written with `tensorboardX <https://github.com/lanpa/tensorboardX>`_ (MIT, kept up
to date since 2017, depends only on numpy, protobuf and packaging: it needs neither PyTorch
nor TensorFlow), installed with ``pip install daskhpo[tensorboard]``.

:class:`MLflow` (in :mod:`daskhpo.integrations.mlflow_callback`) logs each trial as a nested
MLflow run under one run per experiment (``pip install mlflow``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from ..viz.progress import as_callback_dict
from .mlflow_callback import MLflow

__all__ = ["MLflow", "TensorBoard", "export_tensorboard"]

logger = logging.getLogger(__name__)

_FAILED = ("broken", "timeout", "lost")


def _require_tensorboardx() -> Any:
    try:
        import tensorboardX
    except ImportError:
        raise ImportError(
            "daskhpo.integrations.callbacks.TensorBoard needs tensorboardX: pip install tensorboardX "
            "(or pip install 'daskhpo[tensorboard]')"
        ) from None
    return tensorboardX


def _hparam(value: Any) -> bool | float | str | None:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return repr(value)


class TensorBoard:
    """Write each finished trial to TensorBoard.

    Each trial is one run, ``<logdir>/trial_<id>`` (zero-padded), holding

    * its intermediate reports as scalars: ``reported/<metric>`` against the step;
    * its parameters and final metrics for TensorBoard's HParams dashboard (the session's
      hyperparameters, the metrics ``hparam/objective`` and ``hparam/<metric>``, and the
      session status: success for completed and pruned trials, failure otherwise);
    * ``trial/duration`` (seconds) when known.

    Parameters
    ----------
    logdir : path
        The log directory to point ``tensorboard --logdir`` at.
    metric_prefix : str, default "hparam/"
        Prefix of the final metrics' tags (distinct from the curves' tags, as the HParams
        plugin requires).

    Examples
    --------
    >>> from daskhpo.integrations.callbacks import TensorBoard
    >>> experiment.workon(train, max_trials=50, callbacks=[TensorBoard("runs/search")])  # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike, *, metric_prefix: str = "hparam/") -> None:
        _require_tensorboardx()
        self.logdir = os.fspath(logdir)
        self.metric_prefix = metric_prefix
        os.makedirs(self.logdir, exist_ok=True)

    def __repr__(self) -> str:
        return f"TensorBoard({self.logdir!r})"

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Write one finished trial (see the module documentation for the record)."""
        from tensorboardX import SummaryWriter
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboardX.summary import hparams

        trial = int(record["trial"])
        status = str(record.get("status"))
        run = os.path.join(self.logdir, f"trial_{trial:05d}")
        params = {str(k): _hparam(v) for k, v in dict(record.get("params") or {}).items()}
        metrics: dict[str, float] = {}
        objective = record.get("objective")
        if objective is not None and math.isfinite(float(objective)):
            metrics[f"{self.metric_prefix}objective"] = float(objective)
        for name, value in dict(record.get("metrics") or {}).items():
            if value is not None and math.isfinite(float(value)):
                metrics[f"{self.metric_prefix}{name}"] = float(value)
        last_step = max((float(step) for step, _ in record.get("reports") or []), default=0.0)
        with SummaryWriter(logdir=run) as writer:
            for step, values in record.get("reports") or []:
                for name, value in dict(values).items():
                    if value is not None and math.isfinite(float(value)):
                        writer.add_scalar(f"reported/{name}", float(value), _step(step))
            # Only the session's start and end: TensorBoard builds the experiment (every
            # hparam, every metric) from all the runs' sessions, whereas an experiment
            # summary per run would make it pick one run's, arbitrarily.
            _, start, _ = hparams(params, metrics)
            end = SessionEndInfo(status=Status.Value("STATUS_FAILURE" if status in _FAILED else "STATUS_SUCCESS"))
            content = HParamsPluginData(session_end_info=end, version=0).SerializeToString()
            metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
            end_summary = Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=metadata)])
            for summary in (start, end_summary):
                writer.file_writer.add_summary(summary)
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, _step(last_step))
            started, ended = record.get("started"), record.get("ended")
            if started is not None and ended is not None:
                writer.add_scalar("trial/duration", float(ended) - float(started), _step(last_step))
            writer.add_text("trial/status", status if not record.get("error") else f"{status}: {record['error']}")
        logger.debug("wrote trial %d to %s", trial, run)


def _step(step: Any) -> int:
    # TensorBoard's steps are integers; fractional resources are rounded down.
    return int(math.floor(float(step)))


def export_tensorboard(experiment: Any, logdir: str | os.PathLike) -> int:
    """Write every finished trial of an experiment to TensorBoard (see :class:`TensorBoard`).

    Parameters
    ----------
    experiment : Experiment
        E.g. ``daskhpo.load_experiment("exp.nc")``.
    logdir : path

    Returns
    -------
    int
        The number of trials written.
    """
    writer = TensorBoard(logdir)
    count = 0
    for record in experiment.records():
        writer(as_callback_dict(record, experiment.reports(record.trial)))
        count += 1
    return count
