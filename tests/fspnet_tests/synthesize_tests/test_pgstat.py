"""XSPEC pgstat: closed-form profile against a numerical one, limits and gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from fspnet.evaluate import pgstat, pgstat_gradient, reduced_pgstat


def _brute(m, s, b, sigma, ts, tb):
    """-2 ln L minimised numerically over the background rate f >= 0 (one bin)."""

    def w(f):
        mu = ts * (m + f)
        return 2 * (mu - s * np.log(mu) + (b - tb * f) ** 2 / (2 * sigma**2) - s + (s * np.log(s) if s > 0 else 0.0))

    res = minimize_scalar(w, bounds=(0.0, 10 * (b + s + 10) / min(ts, tb)), method="bounded", options={"xatol": 1e-12})
    return min(res.fun, w(0.0))


def test_profile_matches_numerical_minimum(rng):
    for _ in range(20):
        s = float(rng.poisson(rng.uniform(1, 200)))
        b = float(rng.poisson(rng.uniform(5, 200)))
        m, ts, tb = rng.uniform(0.01, 0.5), rng.uniform(100, 1000), rng.uniform(100, 3000)
        sigma = np.sqrt(max(b, 1.0))
        got = pgstat(torch.tensor([[m]]), torch.tensor([[s]]), ts, torch.tensor([[b]]), torch.tensor([[sigma]]), tb)
        assert float(got) == pytest.approx(_brute(m, s, b, sigma, ts, tb), rel=1e-6, abs=1e-6)


def _t(v):
    return torch.tensor([[v]], dtype=torch.float64)


def _one(m, s, b, sigma, ts, tb):
    """pgstat of one bin, all in float64."""
    return float(pgstat(_t(m), _t(s), ts, _t(b), _t(sigma), tb))


def test_zero_counts_zero_background_matches_xspec():
    # XSPEC: S = 0 and f = B/t_b - sigma^2 t_s/t_b^2 = -0.001 < 0, so f = 0 and
    # W = 2 [t_s m + B^2/(2 sigma^2)] = 2 [1000 * 1e-4 + 0] = 0.2 (unclipped: 2 [0.1 - 0.5] = -0.8).
    assert _one(1e-4, 0.0, 0.0, 1.0, 1000.0, 1000.0) == pytest.approx(0.2, rel=1e-12)
    # The default sigma (sqrt(max(B, 1)) = 1) gives the same.
    t = torch.tensor([[1e-4]], dtype=torch.float64)
    z = torch.zeros((1, 1), dtype=torch.float64)
    assert float(pgstat(t, z, 1000.0, z, None, 1000.0)) == pytest.approx(0.2, rel=1e-12)


def test_zero_counts_negative_profile_with_background():
    # S = 0, B = 2, sigma = 3, t_s = 100, t_b = 50: f = 2/50 - 9*100/2500 = 0.04 - 0.36 < 0 -> f = 0,
    # W = 2 [100 * 0.01 + 2^2/(2*9)] = 2 [1 + 0.2222...] = 2.4444...
    assert _one(0.01, 0.0, 2.0, 3.0, 100.0, 50.0) == pytest.approx(2 * (1.0 + 4.0 / 18.0), rel=1e-12)


def test_positive_counts_negative_profile_is_clipped():
    # S = 1, B = 0, sigma = 1, t_s = t_b = 100, m = 0.5: d = 100 - 0 + 1e4 * 0.5 = 5100,
    # disc = 5100^2 + 4e4 (1 - 50 + 0) = 2.405e7, f = (-5100 + 4904.1) / 2e4 = -0.0098 < 0.
    m, s, b, sigma, ts, tb = 0.5, 1.0, 0.0, 1.0, 100.0, 100.0
    d = ts * sigma**2 - tb * b + tb**2 * m
    f = (-d + np.sqrt(d**2 + 4 * tb**2 * (sigma**2 * s - ts * sigma**2 * m + tb * b * m))) / (2 * tb**2)
    assert f < 0
    # At f = 0: W = 2 [t_s m - S ln(t_s m) + B^2/(2 sigma^2) - S (1 - ln S)] = 2 [50 - ln 50 - 1].
    expected = 2 * (50.0 - np.log(50.0) - 1.0)
    assert _one(m, s, b, sigma, ts, tb) == pytest.approx(expected, rel=1e-12)
    assert _one(m, s, b, sigma, ts, tb) == pytest.approx(_brute(m, s, b, sigma, ts, tb), rel=1e-9)


def test_statistic_is_never_negative(rng):
    for _ in range(50):
        s = float(rng.poisson(rng.uniform(0, 3)))
        b = float(rng.poisson(rng.uniform(0, 3)))
        m, ts, tb = rng.uniform(1e-5, 1e-3), rng.uniform(100, 1000), rng.uniform(10, 300)
        assert _one(m, s, b, np.sqrt(max(b, 1.0)), ts, tb) >= -1e-9


def test_zero_counts_bin():
    m, ts, tb, b, sigma = 0.2, 100.0, 400.0, 30.0, 5.0
    got = float(pgstat(torch.tensor([[m]]), torch.tensor([[0.0]]), ts, torch.tensor([[b]]), torch.tensor([[sigma]]), tb))
    # XSPEC: W = 2 [t_s m + B t_s / t_b - sigma^2 t_s^2 / (2 t_b^2)] when that f is positive.
    assert got == pytest.approx(2 * (ts * m + b * ts / tb - sigma**2 * ts**2 / (2 * tb**2)))


def test_cash_limit_and_perfect_model():
    rate = torch.tensor([[1.0, 2.0, 3.0]])
    counts = rate * 50.0
    assert float(pgstat(rate, counts, 50.0)) == pytest.approx(0.0, abs=1e-9)
    worse = float(pgstat(rate * 1.1, counts, 50.0))
    assert worse > 0


def test_gradient_is_the_envelope_derivative(rng):
    s = torch.as_tensor(rng.poisson(40.0, (3, 8)), dtype=torch.float64)
    b = torch.as_tensor(rng.poisson(60.0, (3, 8)), dtype=torch.float64)
    ts, tb = torch.tensor([500.0, 800.0, 1000.0], dtype=torch.float64), torch.tensor([2000.0, 800.0, 3000.0], dtype=torch.float64)
    rate = torch.full((3, 8), 0.05, dtype=torch.float64, requires_grad=True)
    stat = pgstat(rate, s, ts, b, None, tb)
    stat.sum().backward()
    total, grad, fisher = pgstat_gradient(rate.detach(), s, ts, b, None, tb)
    torch.testing.assert_close(total, stat.detach())
    torch.testing.assert_close(grad, rate.grad, rtol=1e-8, atol=1e-10)
    assert torch.all(fisher > 0)


def test_reduced_pgstat_uses_the_band():
    energy = torch.tensor([0.1, 0.5, 1.0, 5.0, 12.0, 20.0, 2.0, 3.0])
    rate = torch.ones(2, 8)
    counts = torch.full((2, 8), 120.0)
    full = pgstat(rate, counts, 100.0, mask=((energy >= 0.3) & (energy <= 10)).double())
    red = reduced_pgstat(rate, counts, 100.0, energy_kev=energy, n_params=2)
    torch.testing.assert_close(red, full / (5 - 2))
    with pytest.raises(ValueError, match="no degrees of freedom"):
        reduced_pgstat(rate, counts, 100.0, energy_kev=energy, n_params=5)
