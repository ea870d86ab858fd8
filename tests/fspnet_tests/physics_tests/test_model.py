"""The FSP-Net source model as the generator and the fitter use it."""

from __future__ import annotations

import math

import pytest
import torch

from fspnet.physics import EzDiskBB, SimplCutX, SourceModel, TBabs, energy_grid

FSPNET_RANGES = {
    "nh": (5e-3, 75.0, True, "1e22 cm^-2"),
    "gamma": (1.3, 4.0, False, ""),
    "fsc": (1e-3, 1.0, True, ""),
    "kt_max": (0.025, 4.0, True, "keV"),
    "norm": (1e-2, 1e10, True, ""),
}


def _draw(model: SourceModel, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 5, generator=g, dtype=torch.float64)
    lo, hi = model.bounds[:, 0], model.bounds[:, 1]
    log = torch.tensor([p.log for p in model.params])
    return torch.where(log, lo * (hi / lo) ** u, lo + u * (hi - lo))


def test_param_metadata_is_fspnets():
    model = SourceModel()
    assert model.param_names == ("nh", "gamma", "fsc", "kt_max", "norm")
    for p in model.params:
        low, high, log, unit = FSPNET_RANGES[p.name]
        assert p.bounds == (low, high) and p.log is log and p.unit == unit and p.description
        assert low <= p.default <= high
    assert repr(model) == "SourceModel(TBabs() * SimplCutX(EzDiskBB(), kte_kev=100.0))"


def test_equals_its_composition():
    edges = energy_grid()
    p = _draw(SourceModel(), 16)
    torch.testing.assert_close(SourceModel()(edges, p), (TBabs() * SimplCutX(EzDiskBB()))(edges, p), rtol=0, atol=0)


def test_batch_rows_are_independent():
    model = SourceModel()
    edges = energy_grid()
    p = _draw(model, 9)
    batch = model(edges, p)
    assert batch.shape == (9, 2000) and batch.dtype == torch.float64
    for i in (0, 4, 8):
        torch.testing.assert_close(model(edges, p[i]), batch[i], rtol=0, atol=0)


def test_finite_and_non_negative_at_the_corners_of_the_parameter_space():
    model = SourceModel()
    lo, hi = model.bounds[:, 0], model.bounds[:, 1]
    corners = torch.stack([torch.where(torch.tensor([(k >> i) & 1 for i in range(5)]).bool(), hi, lo) for k in range(32)])
    flux = model(energy_grid(), corners)
    assert torch.isfinite(flux).all() and (flux >= 0).all()
    # Something reaches the NICER band unless the absorber is opaque there.
    e = energy_grid()
    band = (e[:-1] > 0.3) & (e[1:] < 10.0)
    assert (flux[:, band].sum(1) > 0).all()


def test_photon_flux_in_band_matches_components():
    # nh -> 0 leaves the Comptonised disk; fsc -> 0 leaves the disk.
    edges = energy_grid()
    model = SourceModel()
    p = torch.tensor([[1e-12, 2.0, 1e-12, 0.5, 100.0]], dtype=torch.float64)
    disk = EzDiskBB()(edges, p[:, 3:])
    bright = disk > 1e-6 * disk.max()  # beyond, the 1e-12 scattered tail outshines the disk
    torch.testing.assert_close(model(edges, p)[bright], disk[bright], rtol=1e-6, atol=0)


def test_gradient_matches_finite_differences():
    model = SourceModel()
    edges = energy_grid(300, 0.5, 30.0)  # where every bin has flux (log is finite)
    p0 = torch.tensor([[2.0, 2.43, 0.2, 0.6, 1e4]], dtype=torch.float64)  # gamma between table rows
    # gradient of the log-flux summed over the band, with respect to each parameter
    p = p0.clone().requires_grad_(True)
    torch.log(model(edges, p)).sum().backward()
    for k in range(5):
        h = 1e-6 * float(p0[0, k])
        up, dn = p0.clone(), p0.clone()
        up[0, k] += h
        dn[0, k] -= h
        fd = (torch.log(model(edges, up)).sum() - torch.log(model(edges, dn)).sum()) / (2 * h)
        assert float(p.grad[0, k]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8), model.param_names[k]


def test_float32_params_are_promoted():
    edges = energy_grid(100, 0.1, 10.0)
    p = SourceModel().default_params(2)
    torch.testing.assert_close(SourceModel()(edges, p.float()), SourceModel()(edges, p), rtol=1e-6, atol=0)


@pytest.mark.slow
def test_throughput_and_memory_of_a_large_batch():
    """10,000 spectra on the default grid: timing is printed, not asserted (shared CI)."""
    import resource
    import time

    model = SourceModel()
    edges = energy_grid()
    p = _draw(model, 10_000, seed=3)
    model(edges, p[:10])
    t0 = time.process_time()
    flux = model(edges, p)
    cpu_s = time.process_time() - t0
    assert torch.isfinite(flux).all()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"SourceModel: {10_000 / cpu_s:.0f} spectra per CPU-second, max RSS {rss_gb:.2f} GB")
    assert rss_gb < 4.0
    assert not math.isnan(cpu_s)
