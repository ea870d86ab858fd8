"""Multi-colour accretion-disk blackbodies: ``ezdiskbb`` (zero torque) and ``diskbb``.

Both share one radial integrator. With x = r / R_in, the colour temperature profile
T(r) = T * tau(x) and y = E / T, the photon spectrum of a face-on-normalised disk is

    N(E) = norm * K * T^2 * Phi(y),   Phi(y) = y^2 * int_1^inf x dx / (exp(y / tau(x)) - 1)

with K = 2 pi * 2 / (h^3 c^2) * (1 km / 10 kpc)^2 (photons cm^-2 s^-1 keV^-3), so that
``norm = (R_in / km)^2 / (D / 10 kpc)^2 * cos i`` (diskbb) or the same times f^-4 with f
the colour correction (ezdiskbb, Zimmerman et al. 2005). The flux in a bin [E1, E2] is

    F = norm * K * T^3 * (Q(E1 / T) - Q(E2 / T)),   Q(y) = int_y^inf Phi = int_1^inf x tau^3 B(y / tau) dx

where B(z) = int_z^inf s^2 / (e^s - 1) ds. Q depends on y only, so it is computed once
(per profile) on a fine grid of ln y and interpolated: every spectrum costs one table
look-up per bin edge. This is also the T^2 and E/T scaling of both models.
"""

from __future__ import annotations

import functools
import math
import typing as tp

import numpy as np
import torch

from fspnet.physics._base import Component, Param
from fspnet.physics._grid import _GridCache, _log_step

__all__ = ["DiskBB", "EzDiskBB"]

# Physical constants (CODATA 2018, IAU 2012).
_H_KEV_S = 6.62607015e-34 / 1.602176634e-16  # Planck constant, keV s
_C_CM_S = 2.99792458e10
_KM_CM = 1e5
_KPC_CM = 3.0856775814913673e21
#: photons cm^-2 s^-1 keV^-3 for norm = 1 ((R_in/km)^2 (D/10 kpc)^-2 cos i).
DISK_K = 2.0 * math.pi * 2.0 / (_H_KEV_S**3 * _C_CM_S**2) * (_KM_CM / (10.0 * _KPC_CM)) ** 2

# Table of ln Q on a uniform grid of ln y. y = E / T spans 5e-4 - 8e3 on the default grid
# and parameter range; the table is wider. Outside it the flux is 0 (y > 1e3: e^-1000).
_LN_Y_MIN = math.log(1e-12)
_LN_Y_MAX = math.log(1e3)
_H_COARSE = 0.02  # where Q is integrated exactly (with its derivative)
_H_FINE = 1e-4  # where the torch look-up interpolates linearly

_ZETA3 = 1.2020569031595942


def _bose_tail(z: np.ndarray) -> np.ndarray:
    """B(z) = int_z^inf s^2/(e^s - 1) ds for z >= 0, to ~1e-15 relative."""
    z = np.asarray(z, dtype=np.float64)
    out = np.zeros_like(z)
    big = z >= 2.0
    # sum_k e^(-kz) (z^2/k + 2z/k^2 + 2/k^3): k up to ~38/z gives 1e-16; z > 745 is 0.
    for z_lo, z_hi, n_terms in ((2, 4, 20), (4, 8, 10), (8, 16, 5), (16, 40, 3), (40, 745, 1)):
        sel = (z >= z_lo) & (z < z_hi)
        zb = z[sel]
        acc = np.zeros_like(zb)
        for k in range(1, n_terms + 1):
            acc += np.exp(-k * zb) * (zb**2 / k + 2 * zb / k**2 + 2 / k**3)
        out[sel] = acc
    zs = z[~big]
    # int_0^z s^2/(e^s-1) ds = sum_n B_n z^(n+2) / (n! (n+2)), B_n the Bernoulli numbers.
    from scipy.special import bernoulli, factorial

    n = np.arange(0, 40)
    coef = bernoulli(39)[: len(n)] / (factorial(n) * (n + 2))
    coef[1] = -0.5 / 3.0  # B_1 = -1/2 in this convention
    acc = np.zeros_like(zs)
    for c in coef[::-1]:
        acc = acc * zs + c
    out[~big] = 2.0 * _ZETA3 - zs**2 * acc
    return out


def _profile(kind: str, x: np.ndarray) -> np.ndarray:
    """tau(x) = T(r)/T for x = r/R_in >= 1."""
    if kind == "diskbb":  # T(r) = T_in (r/R_in)^-3/4
        return x**-0.75
    if kind == "ezdiskbb":  # zero torque, scaled so that max tau = 1 (at x = 49/36)
        g_max = ((6.0 / 7.0) ** 6 / 7.0) ** 0.25
        return x**-0.75 * np.clip(1.0 - x**-0.5, 0.0, None) ** 0.25 / g_max
    raise ValueError(f"unknown disk profile {kind!r}; choose diskbb or ezdiskbb")


def _radial_nodes(n: int = 1201, u_max: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x and Simpson weights (dx) on [1, e^u_max]; dense near x = 1."""
    t = np.linspace(0.0, 1.0, n)
    u = u_max * t**3  # ln x
    du_dt = 3 * u_max * t**2
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w *= (t[1] - t[0]) / 3.0
    x = np.exp(u)
    return x, w * du_dt * x  # dx = x du


def disk_q(kind: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q(y) and Phi(y) = -dQ/dy of a disk profile by direct quadrature (numpy, float64).

    Beyond x = e^120 the integrand is below e^-30 of its total; that tail is dropped.
    """
    x, wx = _radial_nodes()
    tau = _profile(kind, x)[:, None]  # [X, 1]
    y = np.asarray(y, dtype=np.float64)[None, :]  # [1, Y]
    ok = tau > 0
    z = np.where(ok, y / np.where(ok, tau, 1.0), np.inf)  # [X, Y]
    q = np.zeros(z.shape)
    finite = np.isfinite(z)
    q[finite] = _bose_tail(z[finite])
    weight = (x[:, None] * tau**3) * wx[:, None]
    q_y = np.sum(weight * q, axis=0)
    with np.errstate(over="ignore"):
        planck = np.where(finite, z**2 / np.expm1(np.minimum(z, 700.0)), 0.0)
    planck = np.where(z > 700.0, 0.0, planck)
    phi = np.sum((x[:, None] * tau**2) * wx[:, None] * planck, axis=0)
    return q_y, phi


@functools.cache
def _coarse_table(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ln y, ln Q and d ln Q / d ln y on the coarse grid where Q is integrated exactly."""
    ln_y = np.arange(_LN_Y_MIN, _LN_Y_MAX + _H_COARSE / 2, _H_COARSE)
    q, phi = disk_q(kind, np.exp(ln_y))
    ok = q > 1e-300
    lnq = np.log(np.where(ok, q, 1e-300))
    # d ln Q / d ln y = -y Phi / Q (exact), used for cubic Hermite interpolation.
    d = np.where(ok, -np.exp(ln_y) * phi / np.where(ok, q, 1.0), 0.0)
    return ln_y, lnq, d


@functools.cache
def _log_q_table(kind: str, step: float = _H_FINE) -> np.ndarray:
    """ln Q at ln y = _LN_Y_MIN + k * step (cubic Hermite from the exact coarse table).

    The error of the Hermite step is ~h^4 |d^4 ln Q| (< 1e-9 where the flux matters);
    the torch look-up then interpolates linearly on this fine grid.
    """
    ln_y, lnq, d = _coarse_table(kind)
    fine = _LN_Y_MIN + step * np.arange(int(np.floor((ln_y[-1] - _LN_Y_MIN) / step)) + 1)
    k = np.clip(((fine - _LN_Y_MIN) / _H_COARSE).astype(np.int64), 0, len(ln_y) - 2)
    s = (fine - ln_y[k]) / _H_COARSE
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    f = h00 * lnq[k] + h10 * _H_COARSE * d[k] + h01 * lnq[k + 1] + h11 * _H_COARSE * d[k + 1]
    # Where Q underflows (y > ~700) keep the table decreasing so the flux is 0 there.
    top = ln_y[lnq > -690.0][-1]
    f = np.where(fine > top, np.minimum.accumulate(np.minimum(f, -690.0)), f)
    return f


def _padded_table(kind: str, step: float, n_edges: int) -> np.ndarray:
    """The fine table padded so that any window of n_edges * K + 2 points stays inside."""
    f = _log_q_table(kind, step)
    pad = n_edges + 2
    # Below the table Q is flat (the flux there is ~y^(1/3), negligible); above it keeps
    # falling with its last slope (the flux underflows to 0).
    left = np.full(pad, f[0])
    right = f[-1] + (f[-1] - f[-2]) * np.arange(1, pad + 1)
    return np.concatenate([left, f, right])


class _DiskPlan:
    """Per-grid precomputation of the disk look-up (cached by the grid's values)."""

    def __init__(self, kind: str, edges: torch.Tensor) -> None:
        self.device = edges.device
        self.log_e = torch.log(edges)
        delta = _log_step(edges)
        n_edges = edges.numel()
        if delta is not None and delta > 0:
            # Log-uniform grid: with table step delta / K every edge of a spectrum sits at
            # the same fraction between table points, so each spectrum needs two row
            # copies of the table (one per neighbour) instead of a gather per edge.
            self.k = max(1, int(math.ceil(delta / _H_FINE)))
            self.step = delta / self.k
            table = _padded_table(kind, self.step, n_edges * self.k)
            self.pad = n_edges * self.k + 2
            n_rows = (len(table) - 1) // self.k
            phases = np.stack([table[p :: self.k][:n_rows] for p in range(self.k)])  # [K, R]
            rows = torch.from_numpy(phases).to(self.device)
            self.windows = rows.unfold(1, n_edges, 1)  # [K, R - E, E + 1]
            # the same windows as rows of the flat table: window (phase p, start r) is row
            # p * R + r, so one index_select copies a spectrum's row (faster than 2-D indexing)
            self.n_rows = n_rows
            self.flat_windows = rows.reshape(-1).unfold(0, n_edges, 1)
            self.max_start = self.windows.shape[1] - 2
            self.log_e0 = float(self.log_e[0])
            self.uniform = True
        else:
            self.step = _H_FINE
            self.table = torch.from_numpy(_log_q_table(kind, _H_FINE)).to(self.device)
            self.slope = torch.diff(self.table)
            self.uniform = False

    def log_q(self, log_t: torch.Tensor) -> torch.Tensor:
        """ln Q(E / T) at every edge [N, E+1] for ln T [N, 1]."""
        if self.uniform:
            u = (self.log_e0 - log_t - _LN_Y_MIN) / self.step + self.pad  # [N, 1]
            u = u.clamp(0.0, float(self.max_start * self.k))
            q = u.detach().floor()
            frac = u - q
            q = q.long()[:, 0]
            a = self.flat_windows.index_select(0, (q % self.k) * self.n_rows + q // self.k)  # [N, E+1]
            q = q + 1
            b = self.flat_windows.index_select(0, (q % self.k) * self.n_rows + q // self.k)
            return torch.lerp(a, b, frac)
        pos = ((self.log_e - log_t - _LN_Y_MIN) / self.step).clamp(0.0, self.table.numel() - 1.000001)
        idx = pos.detach().floor().long()
        return torch.take(self.table, idx) + (pos - idx) * torch.take(self.slope, idx)


_PLANS = _GridCache()


def disk_flux(kind: str, edges: torch.Tensor, temp_kev: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Bin-integrated photon flux [N, E] of a disk profile; ``temp_kev``/``norm`` [N, 1]."""
    plan = _PLANS.get(edges, kind, lambda: _DiskPlan(kind, edges))
    log_t = torch.log(temp_kev)
    lnq = plan.log_q(log_t)  # [N, E+1]
    lo, hi = lnq[:, :-1], lnq[:, 1:]
    # Q(y1) - Q(y2) = Q(y1) * (1 - Q(y2)/Q(y1)): no cancellation when y2 ~ y1.
    scale = -(norm * DISK_K) * temp_kev**3  # [N, 1]
    return torch.exp(lo) * torch.expm1(hi - lo) * scale


class _DiskComponent(Component):
    """A disk profile whose photon flux comes from :func:`disk_flux`."""

    bin_local = True
    _disk_kind: tp.ClassVar[str]

    def _forward_bins(self, edges: torch.Tensor, params: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        # A slice of a general grid may be log-uniform and take the other table path (the
        # same flux to ~1e-8, not to rounding): evaluate the whole grid then.
        if not _PLANS.get(edges, self._disk_kind, lambda: _DiskPlan(self._disk_kind, edges)).uniform:
            return self._forward(edges, params)[:, lo:hi]
        return super()._forward_bins(edges, params, lo, hi)


class EzDiskBB(_DiskComponent):
    r"""Multi-colour disk blackbody with a zero-torque inner boundary (XSPEC ``ezdiskbb``).

    Zimmerman et al. (2005): T(r) is proportional to r^{-3/4} (1 - (R_in/r)^{1/2})^{1/4},
    scaled so that its maximum (at r = 49/36 R_in) is ``kt_max``; the disk extends to
    infinity. The photon flux in each bin is integrated exactly over the bin through the
    cumulative radial integral Q (module docstring), so

    .. math:: F_j = \mathrm{norm}\,K\,T_{max}^3\,[Q(E_j/T_{max}) - Q(E_{j+1}/T_{max})]

    with norm = (1/f^4)(R_in/km)^2/(D/10 kpc)^2 cos i. XSPEC's own ezdiskbb needs a data
    file that is not distributed with its model library; the same integrator with the
    diskbb profile reproduces XSPEC ``diskbb`` (see :class:`DiskBB` and the tests).

    Example:
        >>> flux = EzDiskBB()(energy_grid(), torch.tensor([[1.0, 1e3]]))  # [1, 2000]
    """

    _disk_kind = "ezdiskbb"

    kt_max = Param(
        default=1.0,
        bounds=(0.025, 4.0),
        unit="keV",
        log=True,
        description="maximum colour temperature of the disk",
    )
    norm = Param(
        default=1.0,
        bounds=(1e-2, 1e10),
        unit="",
        log=True,
        description="(1/f^4) (R_in/km)^2 / (D/10 kpc)^2 cos i",
    )

    @staticmethod
    def evaluate(edges: torch.Tensor, kt_max: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """Photon flux per bin [N, E] for ``edges`` [E+1] keV, ``kt_max``/``norm`` [N, 1]."""
        return disk_flux("ezdiskbb", edges, kt_max, norm)


class DiskBB(_DiskComponent):
    r"""Multi-colour disk blackbody, T(r) = T_in (r/R_in)^{-3/4} (XSPEC ``diskbb``).

    Mitsuda et al. (1984); norm = (R_in/km)^2/(D/10 kpc)^2 cos i. Same integrator as
    :class:`EzDiskBB`; kept as the reference against which that integrator is validated.
    """

    _disk_kind = "diskbb"

    t_in = Param(
        default=1.0,
        bounds=(0.01, 10.0),
        unit="keV",
        log=True,
        description="temperature at the inner disk radius",
    )
    norm = Param(
        default=1.0,
        bounds=(1e-2, 1e10),
        unit="",
        log=True,
        description="(R_in/km)^2 / (D/10 kpc)^2 cos i",
    )

    @staticmethod
    def evaluate(edges: torch.Tensor, t_in: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """Photon flux per bin [N, E] for ``edges`` [E+1] keV, ``t_in``/``norm`` [N, 1]."""
        return disk_flux("diskbb", edges, t_in, norm)
