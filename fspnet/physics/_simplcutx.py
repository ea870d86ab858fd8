"""Comptonisation as a convolution: XSPEC ``simpl`` and ``simplcutx`` (R_F = 0, fixed kT_e).

Both move a fraction ``fsc`` of the seed photons of each bin into a scattered component
and keep the photon number (Steiner et al. 2009, 2017). Discretisation follows XSPEC
``simpl`` exactly: the seed photons n_i of bin i sit at the bin's arithmetic mid-point
m_i and the Green's function is integrated over every output bin, so

    out_j = (1 - fsc) n_j + fsc * sum_i n_i * int_{bin j} G(E, m_i) dE.

Photons scattered beyond the last edge leave the grid (as in XSPEC). For a Green's
function separable as G(E, E0) = P(E) a(E0) (each branch of simpl, and simplcutx) the
sum over i is a cumulative sum, so a batch costs a few [N, E] tensor operations.
"""

from __future__ import annotations

import ast
import functools
from importlib import resources

import numpy as np
import torch

from fspnet.physics._base import Component, Convolution, Param
from fspnet.physics._grid import _GridCache, _log_step

__all__ = ["Simpl", "SimplCutX"]

_CACHE = _GridCache()
_TABLE = "nthcomp_rollover.npz"


def _gamma_param() -> Param:
    return Param(
        default=2.0,
        bounds=(1.3, 4.0),
        unit="",
        log=False,
        description="photon index of the scattered power law",
    )


def _fsc_param() -> Param:
    return Param(
        default=0.1,
        bounds=(1e-3, 1.0),
        unit="",
        log=True,
        description="fraction of seed photons scattered",
    )


def _power_integral(log_a: torch.Tensor, log_b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """int_a^b E^p dE, from ln a and ln b, stable for p -> -1 and for b ~ a."""
    s = p + 1.0  # int = a^s (exp(s L) - 1) / s with L = ln(b/a)
    length = log_b - log_a
    sl = s * length
    small = sl.abs() < 1e-8
    safe_s = torch.where(small, torch.ones_like(s), s)
    ratio = torch.where(small, length * (1.0 + 0.5 * sl), torch.expm1(sl) / safe_s)
    return torch.exp(s * log_a) * ratio


def _grid_logs(edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ln edges [E+1], ln arithmetic mid-points [E]), cached per grid."""

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.log(edges), torch.log(0.5 * (edges[:-1] + edges[1:]))

    return _CACHE.get(edges, "logs", build)


class Simpl(Convolution):
    r"""XSPEC ``simpl``: scatter a fraction of the seed photons into a power law.

    Green's function (Steiner et al. 2009) for seed energy E0, up-scattering only:

    .. math:: G(E, E_0) = \frac{\Gamma - 1}{E_0} (E/E_0)^{-\Gamma}, \quad E \ge E_0

    and, with ``upscatter_only=False``, the up- and down-scattering form

    .. math:: G = \frac{(\Gamma-1)(\Gamma+2)}{(2\Gamma+1) E_0}
              \begin{cases} (E/E_0)^{-\Gamma} & E \ge E_0 \\ (E/E_0)^{\Gamma+1} & E < E_0 \end{cases}

    Both integrate to one (photon number conserved). Matches XSPEC simpl bin by bin
    (tests: < 1e-6 relative).

    Args:
        inner: the additive component that provides the seed photons.
        upscatter_only: XSPEC's ``UpScOnly`` switch (True: > 0 there).

    Example:
        >>> model = Simpl(EzDiskBB())  # params: gamma, fsc, kt_max, norm
        >>> flux = model(energy_grid(), torch.tensor([[2.2, 0.2, 0.5, 1e4]]))
    """

    gamma = _gamma_param()
    fsc = _fsc_param()

    def __init__(self, inner: Component, upscatter_only: bool = True) -> None:
        super().__init__(inner)
        self.upscatter_only = bool(upscatter_only)

    def _convolve(  # type: ignore[override]  # named parameters instead of *params
        self, edges: torch.Tensor, flux: torch.Tensor, gamma: torch.Tensor, fsc: torch.Tensor
    ) -> torch.Tensor:
        return self.evaluate(edges, flux, gamma, fsc, self.upscatter_only)

    @staticmethod
    def evaluate(
        edges: torch.Tensor,
        flux: torch.Tensor,
        gamma: torch.Tensor,
        fsc: torch.Tensor,
        upscatter_only: bool = True,
    ) -> torch.Tensor:
        """Scattered + unscattered photons per bin [N, E].

        Args:
            edges: [E+1] keV.
            flux: seed photons per bin [N, E].
            gamma: [N, 1] photon index (> 1).
            fsc: [N, 1] scattered fraction (0-1).
            upscatter_only: Green's function form.
        """
        log_e, log_m = _grid_logs(edges)
        g1 = gamma - 1.0
        if upscatter_only:
            w_up = torch.ones_like(gamma)
        else:
            w_up = (gamma + 2.0) / (2.0 * gamma + 1.0)  # fraction scattered up
        # Up: into bin j from every i < j: (e_j^{1-G} - e_{j+1}^{1-G}) m_i^{G-1} n_i.
        # Work relative to the first mid-point so that the powers stay in range.
        ref = log_m[0]
        a = torch.exp(g1 * (log_m - ref)) * flux  # [N, E]   m_i^{G-1} n_i
        pw = _power_integral(log_e[:-1] - ref, log_e[1:] - ref, -gamma) * g1  # [N, E]
        carried = torch.cumsum(a, dim=1) - a  # sum over i < j
        up = pw * carried
        # Same bin: photons from m_j up to e_{j+1}.
        up_same = _power_integral(log_m, log_e[1:], -gamma) * g1 * torch.exp(g1 * log_m)
        scattered = w_up * (up + up_same * flux)
        if not upscatter_only:
            w_dn = 1.0 - w_up  # (G-1)/(2G+1)
            g2 = gamma + 2.0
            ref_hi = log_m[-1]
            b = torch.exp(-g2 * (log_m - ref_hi)) * flux  # m_i^{-(G+2)} n_i
            pw_dn = _power_integral(log_e[:-1] - ref_hi, log_e[1:] - ref_hi, gamma + 1.0) * g2
            later = torch.flip(torch.cumsum(torch.flip(b, [1]), dim=1), [1]) - b  # i > j
            dn_same = _power_integral(log_e[:-1], log_m, gamma + 1.0) * g2 * torch.exp(-g2 * log_m)
            scattered = scattered + w_dn * (pw_dn * later + dn_same * flux)
        return (1.0 - fsc) * flux + fsc * scattered

    def __repr__(self) -> str:
        return f"Simpl({self.inner!r}, upscatter_only={self.upscatter_only})"


@functools.cache
def _rollover_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, object]]:
    ref = resources.files("fspnet.physics") / "data" / _TABLE
    with resources.as_file(ref) as path, np.load(path) as data:
        meta = ast.literal_eval(str(data["meta"]))
        return (
            data["gamma"].astype(np.float64),
            data["log_x"].astype(np.float64),
            data["c"].astype(np.float64),
            meta,
        )


_TAIL_GAMMA_STEP = 0.002


class _CutPlan:
    """Per-(grid, kT_e) precomputation for :class:`SimplCutX` (cached)."""

    def __init__(self, edges: torch.Tensor, kte_kev: float) -> None:
        e = edges.detach().cpu().numpy().astype(np.float64)
        g, log_x, c, _ = _rollover_table()
        self.g0, self.g_step, self.n_g = float(g[0]), float(g[1] - g[0]), len(g)
        dev = edges.device
        # Rollover of each bin at its geometric centre (c changes < 3 % across a bin).
        x = np.clip(np.log(np.sqrt(e[:-1] * e[1:]) / kte_kev), log_x[0], None)
        rows = np.array([np.interp(x, log_x, row, right=0.0) for row in c])  # [G, E]
        # Below the table's first E/kT_e (a third of the default grid) c is the same in every
        # bin: one value per spectrum for those n_flat bins, a gathered row for the rest.
        same = np.all(rows == rows[:, :1], axis=0)
        self.n_flat = len(same) if same.all() else int(np.argmin(same))
        diff = np.concatenate([np.diff(rows, axis=0), np.zeros_like(rows[:1])])  # to row k+1 (last: 0)
        # row k: c of table row k then its difference to row k+1; one gather per spectrum
        self.c_first = torch.from_numpy(np.stack([rows[:, 0], diff[:, 0]], axis=1)).to(dev)  # [G, 2]
        self.c_pairs = torch.from_numpy(np.concatenate([rows[:, self.n_flat :], diff[:, self.n_flat :]], axis=1)).to(dev)
        self.ref = float(np.log(e[0]))
        log_e = np.log(e)
        self.log_lo = torch.from_numpy(log_e[:-1] - self.ref).to(dev)  # ln(e_j / e_0)
        mid = 0.5 * (e[:-1] + e[1:])
        step = _log_step(edges)
        if step is not None:  # every bin has the same shape: per-spectrum scalars suffice
            self.width = torch.tensor([step], dtype=torch.float64, device=dev)
            self.mid_off = torch.tensor([np.log(mid[0] / e[0])], dtype=torch.float64, device=dev)
        else:
            self.width = torch.from_numpy(np.diff(log_e)).to(dev)  # ln(e_{j+1}/e_j)
            self.mid_off = torch.from_numpy(np.log(mid / e[:-1])).to(dev)  # ln(m_j/e_j)
        # Photons scattered above the grid still count in the normalisation:
        # tail(G) = int_{e_max}^inf E^-G c(E; G) dE, tabulated finely in G (in units of
        # e_0^(1-G), like every other integral here) and interpolated in ln.
        top = max(60.0 * kte_kev, e[-1] * 1.5)
        ext = np.geomspace(e[-1], top, int(np.ceil(np.log(top / e[-1]) / 2e-3)) + 1)
        xe = np.clip(np.log(np.sqrt(ext[:-1] * ext[1:]) / kte_kev), log_x[0], None)
        c_ext = np.array([np.interp(xe, log_x, row, right=0.0) for row in c])  # [G, X]
        gam = np.arange(g[0], g[-1] + 1e-12, _TAIL_GAMMA_STEP)
        pos = np.clip((gam - g[0]) / self.g_step, 0, len(g) - 1 - 1e-9)
        k = pos.astype(int)
        w = (pos - k)[:, None]
        c_g = c_ext[k] * (1 - w) + c_ext[k + 1] * w  # [T, X]
        s = 1.0 - gam[:, None]
        lo, hi = np.log(ext[:-1]) - self.ref, np.log(ext[1:]) - self.ref
        power = np.exp(s * lo) * np.expm1(s * (hi - lo)) / s
        # Beyond the last point c is held at its last value (0 for the nthcomp table).
        rest = c_g[:, -1] * np.exp(s[:, 0] * (np.log(top) - self.ref)) / (gam - 1.0)
        tail = np.sum(c_g * power, axis=1) + rest
        self.tail_g0 = float(gam[0])
        self.log_tail = torch.from_numpy(np.log(np.maximum(tail, 1e-300))).to(dev)


_PLANS = _GridCache()


def _sum_above(w: torch.Tensor, hi: int) -> torch.Tensor:
    """``out[:, j] = sum_{k > j} w[:, k]`` for bins ``j < hi``: [N, E] -> [N, hi].

    Summed from the top, so that small tails stay exact, and exclusive (no ``w_j`` to subtract
    again). Without autograd, in float64 on a CPU, numpy cumulates the reversed view straight
    into a reversed output (one pass; ``torch.flip`` copies cost twice the cumulative sum, and
    a tenth of the synthesizer's model time); otherwise torch flips, with the same sums (torch
    accumulates float32 in float64, numpy would not).
    """
    n, n_bins = w.shape
    h = min(hi, n_bins - 1)  # bin E-1 has nothing above it
    if w.device.type == "cpu" and w.dtype == torch.float64 and not (w.requires_grad and torch.is_grad_enabled()):
        src = w.detach().numpy()
        out = np.empty((n, n_bins))
        out[:, -1] = 0.0
        # w_{E-1}, ..., w_1 cumulated into columns E-2, ..., 0
        np.cumsum(src[:, :0:-1], axis=1, out=out[:, -2::-1])
        return torch.from_numpy(out)[:, :hi]
    from_top = torch.cumsum(torch.flip(w[:, 1:], [1]), dim=1)  # [N, E-1]: sum_{k >= E-1-i} w_k
    above = torch.flip(from_top[:, n_bins - 1 - h :], [1])  # [N, h]
    return above if h == hi else torch.cat([above, torch.zeros_like(above[:, :1])], dim=1)


def _cols(t: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Columns lo:hi of a per-bin [N, E] tensor; a per-spectrum [N, 1] one as it is."""
    return t if t.shape[-1] == 1 else t[:, lo:hi]


class SimplCutX(Convolution):
    r"""``simplcutx`` with reflection fraction 0 and a fixed electron temperature.

    Steiner et al. (2017): like :class:`Simpl` (up-scattering only), but the scattered
    spectrum of seed energy E0 rolls over at the electron temperature:

    .. math:: G(E, E_0) = \frac{E^{-\Gamma} c(E)}{\int_{E_0}^\infty E'^{-\Gamma} c(E')\,dE'},
              \quad E \ge E_0

    so photon number is still conserved exactly. c(E; Gamma, kT_e) is fspnet's
    approximation of the rollover (no public simplcut source): the ratio of XSPEC
    ``nthcomp`` to a pure power law at kT_e = 100 keV, tabulated in Gamma and E/kT_e
    (``scripts/make_simplcut_table.py``); other kT_e rescale E/kT_e. With c = 1 this is
    exactly :class:`Simpl`. ``docs/physics.md`` quantifies its 0.3-10 keV effect.

    Args:
        inner: the additive component that provides the seed photons.
        kte_kev: electron temperature, keV (fixed; FSP-Net uses 100).

    Example:
        >>> model = SimplCutX(EzDiskBB())  # params: gamma, fsc, kt_max, norm
        >>> flux = model(energy_grid(), torch.tensor([[2.2, 0.2, 0.5, 1e4]]))
    """

    gamma = _gamma_param()
    fsc = _fsc_param()
    upward = True

    def __init__(self, inner: Component, kte_kev: float = 100.0) -> None:
        super().__init__(inner)
        if not kte_kev > 0:
            raise ValueError(f"SimplCutX: kte_kev must be > 0, but got {kte_kev}")
        self.kte_kev = float(kte_kev)

    def _convolve(  # type: ignore[override]  # named parameters instead of *params
        self,
        edges: torch.Tensor,
        flux: torch.Tensor,
        gamma: torch.Tensor,
        fsc: torch.Tensor,
        bins: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        return self.evaluate(edges, flux, gamma, fsc, self.kte_kev, bins)

    @staticmethod
    def evaluate(
        edges: torch.Tensor,
        flux: torch.Tensor,
        gamma: torch.Tensor,
        fsc: torch.Tensor,
        kte_kev: float = 100.0,
        bins: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Scattered + unscattered photons per bin [N, E].

        Args:
            edges: [E+1] keV.
            flux: seed photons per bin [N, E]; with ``bins=(lo, hi)`` bins ``0:hi`` only, [N, hi]
                (scattering only moves photons up, so higher bins do not matter).
            gamma: [N, 1] photon index (> 1).
            fsc: [N, 1] scattered fraction (0-1).
            kte_kev: electron temperature, keV.
            bins: return only bins ``lo:hi`` ([N, hi - lo]): the same values, fewer operations.
        """
        plan = _PLANS.get(edges, ("simplcutx", kte_kev), lambda: _CutPlan(edges, kte_kev))
        n_bins = plan.log_lo.numel()
        lo, hi = (0, n_bins) if bins is None else bins
        # Rollover per spectrum, linear in gamma between table rows.
        pos = ((gamma - plan.g0) / plan.g_step).clamp(0.0, plan.n_g - 1 - 1e-9)  # [N, 1]
        k = pos.detach().floor()
        w = pos - k
        k = k.long()[:, 0]
        f, n_tail = plan.n_flat, n_bins - plan.n_flat
        first = plan.c_first.index_select(0, k)  # [N, 2]
        c_flat = torch.addcmul(first[:, :1], first[:, 1:], w)  # [N, 1]: c in bins 0:f
        pair = plan.c_pairs.index_select(0, k)  # [N, 2 (E - f)]
        c_tail = torch.addcmul(pair[:, :n_tail], pair[:, n_tail:], w)  # [N, E - f]: c in bins f:E
        # W_j = int_bin E^-G c dE = c_j e_j^(1-G) expm1((1-G) L_j) / (1-G), in e_0^(1-G):
        # c_j exp((1-G) ln(e_j / e_0) + ln shape), one exp per bin.
        s = (1.0 - gamma).clamp(max=-1e-9)  # [N, 1]; the power law needs gamma > 1
        shape = torch.expm1(s * plan.width) / s  # [N, 1] (or [N, E] on a general grid)
        log_shape = torch.log(shape)
        if flux.device.type == "cpu" and not (torch.is_grad_enabled() and (flux.requires_grad or gamma.requires_grad)):
            # c of bins 0:f joins the exponent; each part written in place (out= has no autograd)
            big_w = flux.new_empty(flux.shape[0], n_bins)  # [N, E]
            x_flat = torch.addcmul(_cols(log_shape, 0, f) + torch.log(c_flat), s, plan.log_lo[:f])
            torch.exp(x_flat, out=big_w[:, :f])
            torch.exp(torch.addcmul(_cols(log_shape, f, n_bins), s, plan.log_lo[f:]), out=big_w[:, f:]).mul_(c_tail)
        else:
            c = torch.cat([c_flat.expand(-1, f), c_tail], dim=1)  # [N, E]
            big_w = c * torch.exp(torch.addcmul(log_shape, s, plan.log_lo))  # [N, E]
        # Same bin, from the mid-point m_j up: int_{m_j}^{e_j+1} = W_j * ratio.
        ratio = torch.exp(s * plan.mid_off) * torch.expm1(s * (plan.width - plan.mid_off)) / (s * shape)
        # I(e_j+1) = sum_{k > j} W_k + tail
        tpos = ((gamma - plan.tail_g0) / _TAIL_GAMMA_STEP).clamp(0.0, plan.log_tail.numel() - 1.000001)
        ti = tpos.detach().floor()
        tf = tpos - ti
        ti = ti.long()
        log_tail = plan.log_tail[ti] * (1 - tf) + plan.log_tail[ti + 1] * tf  # [N, 1]
        above = _sum_above(big_w, hi)  # [N, hi]
        w_in = big_w[:, :hi]
        i_mid = torch.addcmul(above, w_in, _cols(ratio, 0, hi)).add_(torch.exp(log_tail))  # I(m_j) [N, hi]
        a = flux / i_mid
        # photons carried up from every bin i < j: an exclusive cumulative sum
        if lo > 0:
            carried = torch.cumsum(a[:, : hi - 1], dim=1)[:, lo - 1 :]
        else:
            carried = torch.cat([torch.zeros_like(a[:, :1]), torch.cumsum(a[:, : hi - 1], dim=1)], dim=1)
        # W_j (carried_j + ratio_j a_j): from the bins below, and from the same bin above m_j
        scattered = torch.addcmul(carried, a[:, lo:hi], _cols(ratio, lo, hi)).mul_(big_w[:, lo:hi])
        return torch.lerp(flux[:, lo:hi], scattered, fsc)  # (1 - fsc) flux + fsc scattered

    def __repr__(self) -> str:
        return f"SimplCutX({self.inner!r}, kte_kev={self.kte_kev})"
