"""ISM absorption against XSPEC tbabs (abund wilm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fspnet.physics import TBabs, energy_grid, tbabs_cross_section
from fspnet.physics._tbabs import tbabs_bin_cross_section


def _worst(ours: np.ndarray, ref: np.ndarray) -> float:
    sel = ref > 1e-30  # bins that transmit anything at all
    return float(np.max(np.abs(ours[sel] / ref[sel] - 1)))


def test_matches_xspec_oracle_on_the_default_grid(oracle):
    edges = torch.from_numpy(oracle["edges"])
    nh = torch.from_numpy(oracle["tbabs_nh"])[:, None]
    ours = TBabs()(edges, nh).numpy()
    for k, n in enumerate(oracle["tbabs_nh"]):
        # every bin, O K edge and resonances included (the requirement was 1 % away from O K)
        assert _worst(ours[k], oracle["tbabs"][k]) < 1e-3, f"N_H={n}"


@pytest.mark.xspec
def test_matches_live_xspec_on_an_irregular_grid(xspec):
    rng = np.random.default_rng(3)
    edges = np.sort(np.concatenate([np.geomspace(0.01, 50.0, 700), rng.uniform(0.2, 12.0, 300)]))
    for nh in (0.02, 3.0, 40.0):
        ref = xspec("tbabs", edges, [nh])
        ours = TBabs()(torch.from_numpy(edges), torch.tensor([[nh]]))[0].numpy()
        assert _worst(ours, ref) < 1e-3, f"N_H={nh}"


@pytest.mark.xspec
def test_bin_cross_section_is_xspecs(xspec):
    # bins of very different widths, some containing edges (Si K at 1.84 keV, Fe K at 7.1)
    edges = np.array([0.3, 0.5, 0.52, 0.6, 0.7, 1.0, 1.8, 1.9, 2.0, 5.0, 7.0, 7.2, 20.0])
    ref = -np.log(xspec("tbabs", edges, [1e-3])) / 1e-3
    assert np.max(np.abs(tbabs_bin_cross_section(edges) / ref - 1)) < 1e-4


def test_point_cross_section_shape():
    e = np.array([0.1, 0.3, 1.0, 3.0, 10.0, 50.0, 150.0])
    sigma = tbabs_cross_section(e)
    assert np.all(np.diff(sigma[:2]) < 0) and np.all(np.diff(sigma[2:6]) < 0)
    assert sigma[2] == pytest.approx(1.74, rel=0.01)  # 1e-22 cm^2 per H at 1 keV (wilm)
    assert sigma[-1] == 0.0  # tbabs has no absorption above 100 keV


def test_transmission_properties():
    edges = energy_grid()
    t = TBabs()(edges, torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64))
    assert torch.equal(t[0], torch.ones(2000, dtype=torch.float64))
    torch.testing.assert_close(t[2], t[1] ** 2)  # exp(-N_H sigma): columns add
    assert ((t >= 0) & (t <= 1)).all()


def test_gradient_is_minus_sigma_times_transmission():
    edges = energy_grid(200, 0.1, 20.0)
    nh = torch.tensor([[2.5]], dtype=torch.float64, requires_grad=True)
    t = TBabs()(edges, nh)
    t.sum().backward()
    sigma = torch.from_numpy(tbabs_bin_cross_section(edges))
    assert float(nh.grad) == pytest.approx(float(-(sigma * t.detach()[0]).sum()), rel=1e-12)
