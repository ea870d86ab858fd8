"""The HDF5 dataset contract refuses NaN/inf (naming the file and rows) and damaged files."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from fspnet.data import check_finite, nonfinite_rows, read_dataset, write_dataset
from fspnet.errors import DataError

from .conftest import make_dataset


def _poison(path, key, rows, value=np.nan, column=3):
    """Put ``value`` into ``rows`` of dataset ``key`` of an existing file, as a user's tool might."""
    with h5py.File(path, "r+") as f:
        data = f[key][()]
        data[rows, column] = value
        f[key][...] = data


@pytest.fixture()
def good_path(tmp_path):
    ds = make_dataset(20, seed=4)
    ds.uncertainties = np.abs(ds.spectra) * 0.1
    write_dataset(tmp_path / "d.h5", ds)
    return tmp_path / "d.h5"


def test_nan_spectra_refused_with_file_and_rows(good_path):
    _poison(good_path, "spectra", [2, 5, 7, 11, 13, 17, 19])
    with pytest.raises(DataError) as info:
        read_dataset(good_path)
    message = str(info.value)
    assert message.startswith(f"{good_path}: non-finite values (NaN or inf) in spectra rows 2, 5, 7, 11, 13, ... (7 of 20 rows)")
    assert "--skip-nonfinite" in message


@pytest.mark.parametrize(("key", "value"), [("uncertainties", np.inf), ("params", -np.inf), ("params", np.nan)])
def test_nonfinite_uncertainties_and_params_refused(good_path, key, value):
    _poison(good_path, key, [4], value, column=1)
    with pytest.raises(DataError, match=re.escape(f"d.h5: non-finite values (NaN or inf) in {key} row 4 (1 of 20 rows)")):
        read_dataset(good_path)
    ds = read_dataset(good_path, allow_nonfinite=True)
    np.testing.assert_array_equal(np.flatnonzero(nonfinite_rows(ds)), [4])


def test_write_refuses_nonfinite_and_writes_nothing(tmp_path):
    ds = make_dataset(6, seed=1)
    ds.spectra[1, 0] = np.nan
    ds.params[3, 2] = np.inf
    with pytest.raises(
        DataError,
        match=re.escape("out.h5: non-finite values (NaN or inf) in spectra row 1 (1 of 6 rows); params row 3 (1 of 6 rows)"),
    ):
        write_dataset(tmp_path / "out.h5", ds)
    assert list(tmp_path.iterdir()) == []


def test_check_finite_passes_finite_arrays_and_skips_none():
    check_finite("x", spectra=np.ones((3, 4)), params=None)
    with pytest.raises(DataError, match=r"x: non-finite values \(NaN or inf\) in a row 0 \(1 of 1 rows\)"):
        check_finite("x", a=np.array([[np.nan]]))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_a_data_error(good_path, fraction):
    data = good_path.read_bytes()
    good_path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(DataError, match=rf"{good_path.name}: (not a readable HDF5 file|damaged HDF5 dataset|missing dataset)"):
        read_dataset(good_path)


def test_spectra_of_the_wrong_type_is_a_data_error(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("spectra", data=np.array([["a", "b"], ["c", "d"]], dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(DataError, match=r"s.h5: (damaged HDF5 dataset|non-finite)"):
        read_dataset(tmp_path / "s.h5")
