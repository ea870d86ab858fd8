"""Comptonisation kernels: simpl against XSPEC, photon conservation, the kT_e rollover."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fspnet.physics._simplcutx as sc
from fspnet.physics import DiskBB, EzDiskBB, Simpl, SimplCutX, energy_grid


def _simpl(edges, seed, gamma, fsc, up):
    g = torch.tensor([[gamma]], dtype=torch.float64)
    f = torch.tensor([[fsc]], dtype=torch.float64)
    return Simpl.evaluate(edges, torch.as_tensor(seed)[None], g, f, up)[0].numpy()


def _xspec_same_bin_term(edges, seed, gamma, fsc):
    """What XSPEC's simpl (UpScOnly = 0) leaves out of each seed bin.

    XSPEC integrates the down-scattered part of a bin's own photons from its mid-point to
    its *upper* edge instead of its lower edge, so every bin loses
    fsc (G-1)/(2G+1) n_i [(e_i+1/m_i)^(G+2) - (e_i/m_i)^(G+2)] photons: up to ~2 % of
    fsc n_i on fspnet's grid, and photon number is not conserved there.
    """
    e = np.asarray(edges)
    m = 0.5 * (e[:-1] + e[1:])
    w_dn = (gamma - 1) / (2 * gamma + 1)
    return fsc * w_dn * seed * ((e[1:] / m) ** (gamma + 2) - (e[:-1] / m) ** (gamma + 2))


def test_simpl_upscatter_matches_xspec_oracle(oracle):
    edges = torch.from_numpy(oracle["edges"])
    for (gamma, fsc), ref in zip(oracle["simpl_cases"], oracle["simpl_up"]):
        ours = _simpl(edges, oracle["simpl_seed"], gamma, fsc, True)
        sel = ref > 1e-12 * ref.max()
        assert np.max(np.abs(ours[sel] / ref[sel] - 1)) < 1e-6, f"gamma={gamma}"


def test_simpl_up_and_down_matches_xspec_oracle(oracle):
    edges = torch.from_numpy(oracle["edges"])
    seed = oracle["simpl_seed"]
    for (gamma, fsc), ref in zip(oracle["simpl_cases"], oracle["simpl_updown"]):
        ours = _simpl(edges, seed, gamma, fsc, False)
        sel = ref > 1e-12 * ref.max()
        # Exactly XSPEC once its same-bin term is accounted for ...
        fixed = ours - _xspec_same_bin_term(oracle["edges"], seed, gamma, fsc)
        assert np.max(np.abs(fixed[sel] / ref[sel] - 1)) < 1e-6, f"gamma={gamma}"
        # ... and within 1 % of XSPEC as it is, except where fsc = 1 and Gamma = 4.
        if fsc <= 0.5:
            assert np.max(np.abs(ours[sel] / ref[sel] - 1)) < 1e-2, f"gamma={gamma}"


@pytest.mark.xspec
def test_simpl_matches_live_xspec_on_an_irregular_grid(xspec):
    rng = np.random.default_rng(2)
    edges = np.sort(np.concatenate([np.geomspace(0.01, 100.0, 400), rng.uniform(0.01, 100.0, 40)]))
    seed = xspec("diskbb", edges, [0.2])
    for up in (True, False):
        ref = xspec("simpl", edges, [2.7, 0.3, 1.0 if up else 0.0], flux_in=seed)
        ours = _simpl(torch.from_numpy(edges), seed, 2.7, 0.3, up)
        if not up:
            ours = ours - _xspec_same_bin_term(edges, seed, 2.7, 0.3)
        sel = ref > 1e-12 * ref.max()
        assert np.max(np.abs(ours[sel] / ref[sel] - 1)) < 1e-6


@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("gamma", [1.3, 2.0, 4.0])
def test_simpl_conserves_photons(up, gamma):
    edges = energy_grid(3000, 1e-5, 1e7)
    seed = DiskBB()(edges, torch.tensor([[0.3, 1.0]]))[0]
    out = _simpl(edges, seed, gamma, 1.0, up)
    # Photons scattered beyond the grid leave it (as in XSPEC); count them analytically.
    e = edges.numpy()
    m = 0.5 * (e[:-1] + e[1:])
    w_up = 1.0 if up else (gamma + 2) / (2 * gamma + 1)
    gone = w_up * (e[-1] / m) ** (1 - gamma) + (1 - w_up) * (e[0] / m) ** (gamma + 2)
    n = seed.numpy()
    assert (out.sum() + (n * gone).sum()) / n.sum() == pytest.approx(1.0, abs=1e-6)
    if gamma >= 2.0:  # and for steep spectra almost nothing leaves this grid
        assert out.sum() / n.sum() >= 0.999


@pytest.mark.parametrize("gamma", [1.3, 2.2, 4.0])
def test_simplcutx_conserves_photons(gamma):
    edges = energy_grid(3000, 1e-4, 1e4)  # beyond 60 kT_e the rollover has removed everything
    seed = EzDiskBB()(edges, torch.tensor([[0.3, 1.0]]))
    out = SimplCutX(EzDiskBB())(edges, torch.tensor([[gamma, 1.0, 0.3, 1.0]]))
    assert float(out.sum() / seed.sum()) == pytest.approx(1.0, abs=1e-9)


def test_simplcutx_photons_above_the_grid_are_counted_but_not_returned():
    edges = energy_grid()
    p = torch.tensor([[1.3, 1.0, 1.0, 1.0]], dtype=torch.float64)
    seed = EzDiskBB()(edges, p[:, 2:])
    kept = float(SimplCutX(EzDiskBB())(edges, p).sum() / seed.sum())
    assert 0.5 < kept < 1.0  # Gamma = 1.3 puts many photons above 200 keV


def test_simplcutx_without_rollover_is_simpl(monkeypatch):
    g, log_x, c, meta = sc._rollover_table()
    monkeypatch.setattr(sc, "_rollover_table", lambda: (g, log_x, np.ones_like(c), meta))
    monkeypatch.setattr(sc, "_PLANS", sc._GridCache())
    edges = energy_grid()
    p = torch.tensor([[1.3, 0.5, 0.3, 1e3], [2.0, 0.3, 1.0, 1.0], [4.0, 1.0, 0.05, 1e6]], dtype=torch.float64)
    ref = Simpl(EzDiskBB())(edges, p)
    ours = SimplCutX(EzDiskBB())(edges, p)
    sel = ref > 1e-300
    torch.testing.assert_close(ours[sel], ref[sel], rtol=1e-10, atol=0)


def _scattered_shape(edges, gamma, kte=100.0):
    """Spectrum that SimplCutX makes from photons in one low bin (fsc = 1), per keV."""
    n = edges.numel() - 1
    seed = torch.zeros(1, n, dtype=torch.float64)
    seed[0, 0] = 1.0
    g = torch.tensor([[gamma]], dtype=torch.float64)
    out = SimplCutX.evaluate(edges, seed, g, torch.ones(1, 1, dtype=torch.float64), kte)
    return (out[0] / torch.diff(edges)).numpy()


def test_rollover_follows_xspec_nthcomp(oracle):
    edges = torch.from_numpy(oracle["nthcomp_edges"])
    e = np.sqrt(oracle["nthcomp_edges"][1:] * oracle["nthcomp_edges"][:-1])
    for gamma, ref in zip(oracle["nthcomp_gamma"], oracle["nthcomp"]):
        ours = _scattered_shape(edges, gamma)
        ref = ref / np.diff(oracle["nthcomp_edges"])
        band = (e > 0.5) & (e < 2.0)
        ratio = ours / ref / np.mean(ours[band] / ref[band])
        sel = (e > 0.1) & (e < 400.0)
        assert np.max(np.abs(ratio[sel] - 1)) < 0.01, f"gamma={gamma}"


@pytest.mark.xspec
def test_rollover_between_table_rows_follows_live_nthcomp(xspec):
    wide = np.geomspace(0.01, 1000.0, 801)
    e = np.sqrt(wide[1:] * wide[:-1])
    for gamma in (1.42, 2.23, 3.61):
        ref = xspec("nthcomp", wide, [gamma, 100.0, 1e-3, 0.0, 0.0]) / np.diff(wide)
        ours = _scattered_shape(torch.from_numpy(wide), gamma)
        band = (e > 0.5) & (e < 2.0)
        ratio = ours / ref / np.mean(ours[band] / ref[band])
        sel = (e > 0.1) & (e < 400.0)
        assert np.max(np.abs(ratio[sel] - 1)) < 0.01, f"gamma={gamma}"


def test_rollover_in_band_effect_is_bounded():
    """What the kT_e = 100 keV rollover changes in 0.3-10 keV (docs/physics.md)."""
    edges = energy_grid()
    e = torch.sqrt(edges[1:] * edges[:-1])
    band = (e > 0.3) & (e < 10.0)
    soft = (e > 0.3) & (e < 2.0)
    worst, worst_soft = {}, {}
    for gamma in (1.3, 2.0, 3.0, 4.0):
        for kt in (0.025, 0.3, 2.0):
            p = torch.tensor([[gamma, 1.0, kt, 1.0]], dtype=torch.float64)
            cut = SimplCutX(EzDiskBB())(edges, p)[0]
            pure = Simpl(EzDiskBB())(edges, p)[0]
            dev = (cut / pure - 1).abs()
            worst[gamma] = max(worst.get(gamma, 0.0), float(dev[band].max()))
            worst_soft[gamma] = max(worst_soft.get(gamma, 0.0), float(dev[soft].max()))
    # nthcomp is curved already below kT_e / 10 (docs/physics.md, table 2).
    assert worst == pytest.approx({1.3: 0.129, 2.0: 0.042, 3.0: 0.079, 4.0: 0.122}, abs=0.01)
    assert max(worst_soft.values()) < 0.03


def test_gradients_flow_to_every_parameter():
    edges = energy_grid(80, 0.05, 50.0)
    p = torch.tensor([[2.33, 0.3, 0.4, 10.0]], dtype=torch.float64, requires_grad=True)
    SimplCutX(EzDiskBB())(edges, p).sum().backward()
    assert torch.isfinite(p.grad).all() and (p.grad != 0).all()
    h = 1e-6
    f = lambda g: float(SimplCutX(EzDiskBB())(edges, torch.tensor([[g, 0.3, 0.4, 10.0]], dtype=torch.float64)).sum())  # noqa: E731
    # (gamma = 2.33 sits between rollover-table rows: the interpolant is smooth there)
    assert float(p.grad[0, 0]) == pytest.approx((f(2.33 + h) - f(2.33 - h)) / (2 * h), rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sum_above_numpy_path_equals_the_autograd_path(dtype):
    """Without autograd the sums above each bin run in numpy on reversed views (no flip
    copies); with autograd torch flips. Same sums, bit for bit, for every window."""
    from fspnet.physics._simplcutx import _sum_above

    w = torch.rand(6, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype) ** 8
    for hi in (1, 17, 49, 50):
        fast = _sum_above(w, hi)
        slow = _sum_above(w.clone().requires_grad_(True), hi).detach()
        assert fast.dtype == dtype and fast.shape == (6, hi)
        torch.testing.assert_close(fast, slow, rtol=0, atol=0)
        expected = torch.stack([w[:, j + 1 :].double().sum(dim=1) for j in range(hi)], dim=1).to(dtype)
        torch.testing.assert_close(fast, expected, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)


def test_the_path_without_autograd_equals_the_autograd_path():
    """Without autograd, c of the low bins (the same in each bin below the rollover table)
    joins the exponent and W is written in place; with it, the plain expressions run."""
    edges = energy_grid()
    p = torch.tensor([[1.35, 0.02, 0.03, 1e6], [2.2, 0.3, 0.5, 1e3], [3.9, 0.9, 3.5, 1.0]], dtype=torch.float64)
    model = SimplCutX(EzDiskBB())
    assert sc._PLANS.get(edges, ("simplcutx", 100.0), lambda: sc._CutPlan(edges, 100.0)).n_flat > 0
    with torch.no_grad():
        fast = model(edges, p)
    slow = model(edges, p.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(fast, slow, rtol=1e-13, atol=0)
