"""Property tests (Hypothesis) of the dataset loader: NaN/inf anywhere, files cut at any byte."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fspnet.data import nonfinite_rows, read_dataset, write_dataset
from fspnet.errors import DataError

from .conftest import make_dataset

N, C, P = 12, 240, 5
PROPERTY = settings(max_examples=40, deadline=None, database=None)


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    ds = make_dataset(N, seed=2)
    ds.uncertainties = np.abs(ds.spectra) * 0.05
    path = tmp_path_factory.mktemp("ds") / "good.h5"
    write_dataset(path, ds)
    return path.read_bytes()


_CELL = st.tuples(
    st.sampled_from(["spectra", "uncertainties", "params"]),
    st.integers(min_value=0, max_value=N - 1),
    st.integers(min_value=0, max_value=C - 1),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)


@PROPERTY
@given(cells=st.lists(_CELL, min_size=1, max_size=15))
def test_nonfinite_anywhere_is_refused_naming_every_array_and_row(good_bytes, cells):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.h5"
        path.write_bytes(good_bytes)
        rows: dict[str, set[int]] = {}
        with h5py.File(path, "r+") as f:
            for key, row, col, value in cells:
                data = f[key][()]
                data[row, col % data.shape[1]] = value
                f[key][...] = data
                rows.setdefault(key, set()).add(row)
        with pytest.raises(DataError) as info:
            read_dataset(path)
        message = str(info.value)
        assert message.startswith(f"{path}: non-finite values (NaN or inf) in ")
        for key, bad in rows.items():
            shown = ", ".join(str(i) for i in sorted(bad)[:5])
            word = "row" if len(bad) == 1 else "rows"
            assert f"{key} {word} {shown}" in message and f"({len(bad)} of {N} rows)" in message
        ds = read_dataset(path, allow_nonfinite=True)
        assert set(np.flatnonzero(nonfinite_rows(ds))) == set().union(*rows.values())


@PROPERTY
@given(cut=st.integers(min_value=0, max_value=200_000))
def test_truncated_file_is_a_data_error_or_whole(good_bytes, cut):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.h5"
        path.write_bytes(good_bytes[: min(cut, len(good_bytes))])
        try:
            ds = read_dataset(path)
        except DataError as e:
            assert str(e).startswith(str(path))
        else:  # only a file that lost nothing it needs may load, and then it loads right
            assert len(ds) == N and np.isfinite(ds.spectra).all()
