"""TensorBoard callback and export (daskhpo/callbacks.py); event files are read back."""

from __future__ import annotations

import glob
import os
import struct

import pytest

import daskhpo
from daskhpo.integrations.cli import main

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.proto.event_pb2 import Event  # noqa: E402
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData  # noqa: E402

from daskhpo.integrations.callbacks import TensorBoard  # noqa: E402


def read_events(run_dir):
    """Every Event in a run directory's event files (TFRecord: length, crc, data, crc)."""
    events = []
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        with open(path, "rb") as fh:
            data = fh.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = Event()
            event.ParseFromString(data[offset + 12 : offset + 12 + length])
            events.append(event)
            offset += 12 + length + 4
    return events


def summarize(run_dir):
    scalars, hparams, status = {}, None, None
    for event in read_events(run_dir):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                content = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                # no experiment summary per run: TensorBoard would take one run's as everyone's
                assert not content.HasField("experiment")
                if content.HasField("session_start_info"):
                    hparams = {k: v for k, v in content.session_start_info.hparams.items()}
                if content.HasField("session_end_info"):
                    status = content.session_end_info.status
            elif value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars, hparams, status


def train(lr, kind, epochs=3):
    if kind == "bad":
        raise RuntimeError("diverged")
    loss = 0.0
    for epoch in range(1, epochs + 1):
        loss = lr / epoch
        daskhpo.report(epoch, objective=loss, accuracy=1 - loss)
    return {"objective": loss, "accuracy": 1 - loss}


def test_tensorboard_callback_and_export(client, tmp_path, capsys):
    from tensorboardX.proto.api_pb2 import Status

    storage = tmp_path / "exp.nc"
    experiment = daskhpo.build_experiment(
        "tb", {"lr": "loguniform(0.01, 1)", "kind": "choices(['good', 'bad'])"}, storage=storage, seed=0)
    experiment.workon(train, max_trials=4, client=client, max_broken=100, progress=False,
                      callbacks=[TensorBoard(tmp_path / "live")])
    ds = experiment.history
    runs = sorted(os.listdir(tmp_path / "live"))
    assert runs == [f"trial_{t:05d}" for t in ds["trial"].values]
    for trial in ds["trial"].values:
        scalars, hparams, status = summarize(tmp_path / "live" / f"trial_{trial:05d}")
        row = ds.sel(trial=trial)
        assert hparams["lr"].number_value == pytest.approx(float(row["lr"]))
        assert hparams["kind"].string_value == str(row["kind"].values)
        if row["status"] == "completed":
            assert status == Status.Value("STATUS_SUCCESS")
            assert [s for s, _ in scalars["reported/objective"]] == [1, 2, 3]
            assert scalars["reported/accuracy"][-1][1] == pytest.approx(1 - float(row["objective"]), rel=1e-6)
            assert scalars["hparam/objective"] == [(3, pytest.approx(float(row["objective"]), rel=1e-6))]
            assert "hparam/accuracy" in scalars
        else:
            assert status == Status.Value("STATUS_FAILURE")
            assert "hparam/objective" not in scalars
    assert {"completed", "broken"} <= set(ds["status"].values.astype(str))

    # the same from the stored experiment, through the command line
    assert main(["export", "tensorboard", str(storage), str(tmp_path / "exported")]) == 0
    assert f"wrote {len(runs)} trials" in capsys.readouterr().out
    for run in runs:
        live, exported = summarize(tmp_path / "live" / run), summarize(tmp_path / "exported" / run)
        assert live[0].keys() == exported[0].keys()
        assert live[1] == exported[1] and live[2] == exported[2]
        for tag in live[0]:
            assert [v for _, v in live[0][tag]] == pytest.approx([v for _, v in exported[0][tag]], rel=1e-5)


def test_tensorboards_hparams_plugin_sees_every_parameter_and_metric(tmp_path):
    """With TensorBoard itself installed: its HParams backend reads what the callback wrote."""
    pytest.importorskip("tensorboard.plugins.hparams.backend_context")
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    callback = TensorBoard(tmp_path)
    callback({"trial": 0, "params": {"lr": 0.1, "kind": "bad"}, "status": "broken", "objective": float("nan"),
              "metrics": {}, "reports": [], "error": "diverged"})
    for i in (1, 2):
        callback({"trial": i, "params": {"lr": 0.1 * i, "kind": "good", **({"depth": 3} if i == 2 else {})},
                  "status": "completed", "objective": 1.0 / i, "metrics": {"accuracy": 0.5 + 0.1 * i},
                  "reports": [(1, {"objective": 2.0 / i})], "started": 0.0, "ended": 1.0})
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(tmp_path))
    context = backend_context.Context(base_plugin.TBContext(logdir=str(tmp_path), multiplexer=mux,
                                                            data_provider=provider))
    ctx = tb_context.RequestContext()
    metadata = context.hparams_metadata(ctx, "")
    experiment = context.experiment_from_metadata(ctx, "", True, metadata, [])
    assert sorted(h.name for h in experiment.hparam_infos) == ["depth", "kind", "lr"]
    assert {"hparam/objective", "hparam/accuracy"} <= {m.name.tag for m in experiment.metric_infos}
    assert len(metadata) == 3  # one session per trial
