"""Multi-colour disks: the radial integrator against XSPEC diskbb, scaling identities, ezdiskbb."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from fspnet.physics import DiskBB, EzDiskBB, energy_grid
from fspnet.physics._ezdiskbb import DISK_K, _profile


def _bright(ref: np.ndarray) -> np.ndarray:
    # XSPEC's diskbb is a fitted approximation that loses accuracy in the far Wien tail.
    return ref > 1e-6 * ref.max()


def test_diskbb_matches_xspec_oracle(oracle):
    edges = torch.from_numpy(oracle["edges"])
    for t, ref in zip(oracle["diskbb_t"], oracle["diskbb"]):
        ours = DiskBB()(edges, torch.tensor([[t, 1.0]]))[0].numpy()
        sel = _bright(ref)
        assert np.max(np.abs(ours[sel] / ref[sel] - 1)) < 2e-3, f"T_in={t}"


@pytest.mark.xspec
def test_diskbb_matches_live_xspec_on_an_irregular_grid(xspec):
    rng = np.random.default_rng(1)
    edges = np.sort(np.concatenate([np.geomspace(0.05, 30.0, 300), rng.uniform(0.05, 30.0, 50)]))
    for t in (0.07, 1.3):
        ref = xspec("diskbb", edges, [t])
        ours = DiskBB()(torch.from_numpy(edges), torch.tensor([[t, 3.0]]))[0].numpy() / 3.0
        sel = _bright(ref)
        assert np.max(np.abs(ours[sel] / ref[sel] - 1)) < 2e-3


def _direct(kind: str, e_lo: float, e_hi: float, t: float) -> float:
    """Bin flux by brute-force 2-D quadrature of the Planck function over radius and energy."""

    def n_of_e(e: float) -> float:
        def integrand(u: float) -> float:
            x = np.exp(u)
            tau = _profile(kind, np.array([x]))[0]
            if tau <= 0:
                return 0.0
            z = e / (t * tau)
            return 0.0 if z > 700 else x * x / np.expm1(z)

        return DISK_K * e * e * quad(integrand, 0.0, 60.0, limit=400, epsrel=1e-11, points=[0.31, 2.0])[0]

    return quad(n_of_e, e_lo, e_hi, epsrel=1e-9)[0]


@pytest.mark.parametrize(("kind", "model"), [("diskbb", DiskBB), ("ezdiskbb", EzDiskBB)])
def test_bin_flux_matches_brute_force_quadrature(kind, model):
    edges = torch.tensor([0.01, 0.3, 0.31, 2.0, 2.02, 7.0, 7.05], dtype=torch.float64)
    t = 0.8
    ours = model()(edges, torch.tensor([[t, 1.0]]))[0].numpy()
    for j in (1, 5):
        ref = _direct(kind, float(edges[j]), float(edges[j + 1]), t)
        assert ours[j] == pytest.approx(ref, rel=2e-6), f"bin {j}"


@pytest.mark.parametrize("model", [DiskBB(), EzDiskBB()])
def test_temperature_scaling_identities(model):
    # N(E; T) = T^2 Phi(E/T): bins scaled by s with T scaled by s hold s^3 times the photons,
    # and at fixed E/T the flux density scales as T^2.
    edges = energy_grid(500, 0.01, 50.0)
    for t, s in ((0.3, 2.0), (1.0, 0.37)):
        a = model(edges, torch.tensor([[t, 1.0]]))
        b = model(edges * s, torch.tensor([[t * s, 1.0]]))
        sel = a > 1e-250
        torch.testing.assert_close(b[sel], a[sel] * s**3, rtol=5e-6, atol=0)
        density_a = a / torch.diff(edges)
        density_b = b / torch.diff(edges * s)
        torch.testing.assert_close(density_b[sel], density_a[sel] * s**2, rtol=5e-6, atol=0)


def test_norm_is_linear_and_ezdiskbb_peaks_at_kt_max():
    edges = energy_grid(400, 0.05, 100.0)
    one = EzDiskBB()(edges, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(EzDiskBB()(edges, torch.tensor([[1.0, 7.5]])), 7.5 * one)
    # Wien tail of the hottest annulus: d ln N / dE -> -1 / kT_max (up to slow power-law terms).
    e = torch.sqrt(edges[1:] * edges[:-1])
    dens = one[0] / torch.diff(edges)
    sel = (e > 20) & (e < 40)
    slope = torch.diff(torch.log(dens[sel])) / torch.diff(e[sel])
    assert float(slope.mean()) == pytest.approx(-1.0, rel=0.1)
    # the zero-torque profile peaks at r = 49/36 R_in, at 0.48787 of the r^-3/4 law there
    ratio_tmax = ((6.0 / 7.0) ** 6 / 7.0) ** 0.25
    assert _profile("ezdiskbb", np.array([49.0 / 36.0]))[0] == pytest.approx(1.0, rel=1e-12)
    assert ratio_tmax == pytest.approx(0.48787, abs=1e-5)


def test_regular_and_irregular_grids_agree():
    regular = energy_grid(1000, 0.002, 200.0)
    irregular = torch.cat([regular[:400], regular[401:]])  # one edge removed: not log-uniform
    p = torch.tensor([[0.025, 1e8], [0.4, 10.0], [4.0, 1.0]], dtype=torch.float64)
    a = EzDiskBB()(regular, p)
    b = EzDiskBB()(irregular, p)
    merged = torch.cat([a[:, :399], a[:, 399:401].sum(1, keepdim=True), a[:, 401:]], dim=1)
    sel = merged > 1e-200
    torch.testing.assert_close(b[sel], merged[sel], rtol=2e-5, atol=0)


def test_gradients_are_finite_and_correct():
    edges = energy_grid(60, 0.1, 20.0)
    p = torch.tensor([[0.7, 50.0]], dtype=torch.float64, requires_grad=True)
    flux = EzDiskBB()(edges, p)
    flux.sum().backward()
    assert torch.isfinite(p.grad).all()
    # d F / d norm = F / norm exactly; d F / d T against a central difference.
    assert float(p.grad[0, 1]) == pytest.approx(float(flux.detach().sum()) / 50.0, rel=1e-12)
    h = 1e-5
    up = EzDiskBB()(edges, torch.tensor([[0.7 + h, 50.0]], dtype=torch.float64)).sum()
    dn = EzDiskBB()(edges, torch.tensor([[0.7 - h, 50.0]], dtype=torch.float64)).sum()
    assert float(p.grad[0, 0]) == pytest.approx(float(up - dn) / (2 * h), rel=1e-3)
