"""A truncated or overwritten snapshot gives an error naming the file and what to do."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import xarray as xr

from daskhpo.store.errors import CorruptStorage, open_snapshot


@pytest.fixture
def snapshot(tmp_path):
    path = tmp_path / "exp.nc"
    ds = xr.Dataset({"x": ("trial", np.arange(50.0))}, attrs={"space": '{"x": "uniform(0, 1)"}'})
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def test_a_good_snapshot_loads(snapshot):
    ds = open_snapshot(snapshot)
    assert ds["x"].size == 50 and ds.attrs["space"]


@pytest.mark.parametrize("keep", [0, 8, 100, 0.5, -10])
def test_a_truncated_snapshot_names_the_file_and_the_journal(snapshot, keep):
    data = snapshot.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    snapshot.write_bytes(data[:n])
    journal = snapshot.with_name("exp.nc.journal")
    journal.write_text('{"event": "trial", "trial": 0}\n')
    before = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    with pytest.raises(CorruptStorage) as info:
        open_snapshot(snapshot)
    exc = info.value
    assert isinstance(exc, OSError)
    message = str(exc)
    assert repr(str(snapshot)) in message
    assert repr(str(journal)) in message
    assert "backup" in message and "nothing was changed" in message
    assert exc.journal == str(journal)
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == before  # untouched
    assert str(pickle.loads(pickle.dumps(exc))) == message


def test_garbage_without_a_journal(tmp_path):
    path = tmp_path / "exp.nc"
    path.write_bytes(b"not a netCDF file" * 10)
    with pytest.raises(CorruptStorage, match="There is no journal beside it"):
        open_snapshot(path)


def test_a_missing_file_is_not_corruption(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        open_snapshot(tmp_path / "nothing.nc")
    assert not isinstance(info.value, CorruptStorage)


@pytest.mark.parametrize("error", [KeyError("Unable to synchronously open object"), RuntimeError("bad id")])
def test_what_hdf5_raises_for_flipped_bytes_is_corrupt_storage_too(snapshot, monkeypatch, error):
    # Flipping random bytes of a snapshot gives KeyError or RuntimeError from h5py (and, rarely,
    # hangs HDF5): simulated here so that the test process stays safe.
    def damaged(*args, **kwargs):
        raise error

    monkeypatch.setattr(xr, "load_dataset", damaged)
    with pytest.raises(CorruptStorage, match=type(error).__name__):
        open_snapshot(snapshot)
