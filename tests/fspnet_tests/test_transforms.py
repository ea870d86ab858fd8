"""Transforms round-trip, clamping, JSON save/load; splits are seeded and stored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fspnet.data import Transforms, load_split, load_transforms, make_split, subset_indices
from fspnet.data._transforms import ParamTransform, SpectrumTransform
from fspnet.errors import DataError


def _data(rng, n=64):
    spectra = 10 ** rng.uniform(-4, 2, (n, 240))
    params = np.stack(
        [10 ** rng.uniform(-2, 1.8, n), rng.uniform(1.3, 4, n), 10 ** rng.uniform(-3, 0, n),
         10 ** rng.uniform(-1.6, 0.6, n), 10 ** rng.uniform(-2, 10, n)], axis=1,
    )  # fmt: skip
    return spectra, params


def test_round_trip_numpy_and_torch(rng):
    spectra, params = _data(rng)
    t = Transforms.fit(spectra, params, log_params=[0, 2, 3, 4], param_names=list("abcde"))
    s = t.spectra(spectra)
    assert s.min() == pytest.approx(0.0, abs=1e-12) and s.max() == pytest.approx(1.0)
    np.testing.assert_allclose(t.spectra.inverse(s), spectra, rtol=1e-10)
    z = t.params(params)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-10)
    np.testing.assert_allclose(t.params.inverse(z), params, rtol=1e-10)
    zt = t.params(torch.from_numpy(params))
    assert isinstance(zt, torch.Tensor)
    torch.testing.assert_close(t.params.inverse(zt), torch.from_numpy(params))


def test_non_positive_bins_take_the_spectrum_minimum():
    spectra = np.array([[0.0, 1.0, 10.0, -3.0], [2.0, 100.0, 1000.0, 20.0]])
    t = SpectrumTransform.fit(spectra)
    assert t.log_min == 0.0 and t.log_max == 3.0 and t.floor == 1.0
    np.testing.assert_allclose(t.inverse(t(spectra))[0], [1.0, 1.0, 10.0, 1.0])
    # a spectrum with no positive bin falls back to the training floor
    np.testing.assert_allclose(t(np.zeros((1, 4))), 0.0)
    with pytest.raises(DataError, match=r"no positive bin"):
        SpectrumTransform.fit(np.zeros((2, 3)))


def test_nan_is_not_imputed_by_the_clamp():
    t = SpectrumTransform.fit(np.array([[1.0, 10.0, 100.0]]))
    x = np.array([[np.nan, 10.0, 0.0], [-np.inf, 1.0, 100.0], [np.nan, np.nan, np.nan]])
    y = t(x)
    # NaN and -inf stay missing (NaN); the zero is still raised to its row's smallest positive bin
    assert np.isnan(y[0, 0]) and np.isnan(y[1, 0]) and np.isnan(y[2]).all()
    np.testing.assert_allclose(t.inverse(y[0, 1:]), [10.0, 10.0])
    np.testing.assert_allclose(t.inverse(y[1, 1:]), [1.0, 100.0])
    yt = t(torch.from_numpy(x))
    assert torch.isnan(yt[0, 0]) and torch.isnan(yt[2]).all()


def test_fit_refuses_nonfinite_training_data():
    spectra = np.ones((8, 3))
    spectra[[2, 6], 1] = [np.nan, np.inf]
    with pytest.raises(DataError, match=r"spectra: non-finite values \(NaN or inf\) in training rows \[2, 6\] \(2 of 8 rows\)"):
        SpectrumTransform.fit(spectra)
    params = np.ones((4, 2))
    params[1, 0] = np.nan
    with pytest.raises(DataError, match=r"params: non-finite values \(NaN or inf\) in training rows \[1\] \(1 of 4 rows\)"):
        ParamTransform.fit(params)


def test_param_transform_errors_and_constant_columns():
    with pytest.raises(DataError, match=r"column 0 is log-scaled but has values <= 0"):
        ParamTransform.fit(np.array([[0.0, 1.0], [1.0, 2.0]]), log_params=[0])
    t = ParamTransform.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert t.std[1] == 1.0
    np.testing.assert_allclose(t.inverse(t(np.array([[2.0, 5.0]]))), [[2.0, 5.0]])


def test_save_and_load(tmp_path, rng):
    spectra, params = _data(rng)
    t = Transforms.fit(spectra, params, log_params=[0, 4], param_names=list("abcde"))
    t.save(tmp_path / "transforms.json")
    u = load_transforms(tmp_path / "transforms.json")
    assert u == t
    np.testing.assert_allclose(u.params.inverse(t.params(params)), params, rtol=1e-10)
    (tmp_path / "bad.json").write_text('{"params": null}')
    with pytest.raises(DataError, match=r"bad.json: malformed transforms"):
        load_transforms(tmp_path / "bad.json")
    with pytest.raises(DataError, match=r"transforms file not found"):
        load_transforms(tmp_path / "none.json")


def test_splits_are_seeded_disjoint_and_stored(tmp_path):
    a, b = make_split(100, 0.2, seed=3), make_split(100, 0.2, seed=3)
    np.testing.assert_array_equal(a.train, b.train)
    assert len(a.val) == 20 and not set(a.train) & set(a.val)
    assert not np.array_equal(a.val, make_split(100, 0.2, seed=4).val)
    a.save(tmp_path / "splits.json")
    c = load_split(tmp_path / "splits.json")
    np.testing.assert_array_equal(c.val, a.val)
    rows = subset_indices(100, 10, "random", seed=1)
    sub = make_split(rows, 0.2, seed=0, n_total=100)
    assert set(sub.train) | set(sub.val) == set(rows) and sub.n_total == 100
    np.testing.assert_array_equal(subset_indices(100, 10, "first"), np.arange(10))
    with pytest.raises(DataError, match=r"too few"):
        make_split(1, 0.5, seed=0)
