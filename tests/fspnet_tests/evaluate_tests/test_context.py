"""Exposures, counts and the recovery statistics behind the report."""

from __future__ import annotations

import numpy as np
import pytest

from fspnet.data import SpectrumDataset
from fspnet.evaluate import GOALS
from fspnet.evaluate._context import ParamInfo, exposures, param_infos
from fspnet.evaluate._recovery import plot_recovery_map, recovery_stats


def test_param_infos_take_the_models_bounds():
    infos = param_infos(["nh", "gamma", "fsc", "kt_max", "norm"], [0, 2, 3, 4])
    norm = infos[4]
    assert norm.log and (norm.low, norm.high) == (1e-2, 1e10) and norm.span == pytest.approx(12.0)
    assert not infos[1].log and infos[1].span == pytest.approx(2.7)


def test_pegged_values():
    info = ParamInfo("kt_max", "keV", True, 0.025, 4.0)
    mask = info.pegged(np.array([0.025, 0.0251, 0.5, 4.0, 9.0, -1.0]))
    assert mask.tolist() == [True, True, False, True, True, True]


def test_recovery_stats_in_transformed_units():
    infos = [ParamInfo("norm", "", True, 1e-2, 1e10), ParamInfo("gamma", "", False, 1.3, 4.0)]
    ref = np.array([[1.0, 2.0], [10.0, 3.0], [100.0, 2.5], [1e3, 1.5]])
    pred = ref * np.array([10**0.59, 1.0]) + np.array([0.0, 0.27])  # +0.59 dex, +0.27
    s = recovery_stats(pred, ref, infos)
    assert s["norm"]["median_abs_delta"] == pytest.approx(0.59)
    assert s["norm"]["median_abs_delta_pct"] == pytest.approx(100 * 0.59 / 12)
    assert GOALS.recovery_pct == 5.0 and s["norm"]["goal_met"]  # just inside the accuracy goal's 5 % line
    assert s["gamma"]["median_abs_delta_pct"] == pytest.approx(10.0)
    assert not s["gamma"]["goal_met"]
    assert s["gamma"]["scatter"] == pytest.approx(0.0, abs=1e-12)


def test_recovery_map_bins_the_error_by_each_true_parameter():
    import matplotlib.pyplot as plt

    infos = [ParamInfo("gamma", "", False, 1.0, 3.0), ParamInfo("kt", "keV", True, 0.1, 10.0)]
    rng = np.random.default_rng(0)
    ref = np.stack([rng.uniform(1.0, 3.0, 600), 10 ** rng.uniform(-1, 1, 600)], 1)
    pred = ref.copy()
    pred[:, 0] += np.where(ref[:, 1] > 1.0, 0.2, 0.02)  # gamma is lost where kt > 1: 10 % vs 1 %
    fig = plot_recovery_map({"encoder": (pred, ref)}, infos, n_bins=4)
    line = fig.axes[1].get_lines()[0]  # row gamma, column kt
    assert np.allclose(line.get_ydata(), [1.0, 1.0, 10.0, 10.0])
    assert np.allclose(line.get_xdata(), np.sort(line.get_xdata())) and -1 < line.get_xdata()[0] < 0
    flat = fig.axes[0].get_lines()[0].get_ydata()  # gamma against gamma: a mix of both, no trend
    assert np.all((flat > 0.99) & (flat < 10.01))
    plt.close(fig)


def _dataset(source: dict, spectra: np.ndarray, sigma: np.ndarray | None = None) -> SpectrumDataset:
    c = spectra.shape[1]
    return SpectrumDataset(
        spectra=spectra.astype(np.float32), energy_centres=np.linspace(0.3, 10, c), energy_widths=np.full(c, 0.04),
        uncertainties=None if sigma is None else sigma.astype(np.float32), source=source,
    )  # fmt: skip


def test_exposure_from_config_files_or_uncertainties(rng):
    counts = rng.poisson(50.0, size=(3, 20)).astype(float) + 1
    t = np.array([500.0, 1000.0, 4000.0])
    norm = 1.0 / (t[:, None] * 52 * 0.04)
    spectra, sigma = counts * norm, np.sqrt(counts) * norm
    got, how = exposures(_dataset({"config": {"exposure": {"value": 1000.0, "range": None}}}, spectra), 52)
    assert np.all(got == 1000.0) and how == "generator config exposure.value"
    files = [{"exposure_s": v} for v in t]
    assert np.allclose(exposures(_dataset({"files": files}, spectra), 52)[0], t)
    got, how = exposures(_dataset({"config": {"exposure": {"value": 1000.0, "range": [500.0, 5000.0]}}}, spectra, sigma), 52)
    assert how == "recovered from the uncertainties" and np.allclose(got, t, rtol=1e-5)
