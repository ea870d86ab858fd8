"""The traditional fit: batched, bounded Levenberg-Marquardt on ``pgstat`` with the data's model.

This is the accuracy and speed baseline for the networks (XSPEC's ``fit`` does the same with
its own Levenberg-Marquardt, one spectrum at a time). Every spectrum is fitted independently
but all of them advance together, as tensors:

- parameters live in the unit box ``u``: ``p = low + u (high - low)``, in log10 for log
  parameters; steps are projected onto the box and a parameter at a bound that the gradient
  pushes outwards is held there (as XSPEC's hard limits), so every step stays inside;
- each iteration evaluates the model once, its Jacobian with respect to ``u`` by central
  differences (``2 P`` more evaluations, batched; one-sided at a bound), and takes a damped Gauss-Newton step with
  the Poisson Fisher information as curvature (the profiled background drops out of the
  gradient by the envelope theorem);
- a spectrum stops when the Newton decrement ``g^T H^-1 g / 2`` (the decrease an undamped
  step would still bring) is below ``tol``, or when no step improves it any more (damping
  past 1e10); finished spectra drop out of the batch.

Several starts per spectrum (the given ``init``, e.g. network predictions, plus the best of
``n_candidates`` random draws) are fitted together and the best result is kept.
"""

from __future__ import annotations

import dataclasses
import math
import typing as tp

import numpy as np
import torch

from fspnet.evaluate._pgstat import pgstat_gradient

if tp.TYPE_CHECKING:
    from fspnet.physics import Component
    from fspnet.response import Folder

__all__ = ["FitResult", "fit_spectra", "spectrum_to_counts"]


@dataclasses.dataclass
class FitResult:
    """Best-fit parameters and statistics per spectrum.

    Args:
        params: [N, P] best-fit physical parameters.
        stat: [N] pgstat at the best fit (summed over the band).
        reduced_stat: [N] ``stat / (bins in band - P)``.
        n_iter: [N] iterations used by the winning start.
        converged: [N] whether the winning start met the tolerance.
        n_evaluations: total model evaluations (spectra x calls), for speed comparisons.
    """

    params: np.ndarray
    stat: np.ndarray
    reduced_stat: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    n_evaluations: int = 0


def spectrum_to_counts(
    spectra: np.ndarray, energy_widths: np.ndarray, exposure: np.ndarray | float, detectors: float = 52
) -> np.ndarray:
    """counts s^-1 keV^-1 detector^-1 [N, C] -> counts per bin [N, C] for ``exposure`` s."""
    t = np.asarray(exposure, dtype=np.float64)
    t = t[:, None] if t.ndim else t
    return np.asarray(spectra, dtype=np.float64) * np.asarray(energy_widths) * detectors * t


class _Transform:
    """Physical parameters <-> the unit box u in [0, 1]^P (log10 where ``log``)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, log: np.ndarray) -> None:
        self.log = torch.as_tensor(log, dtype=torch.bool)
        lo = torch.as_tensor(low, dtype=torch.float64)
        hi = torch.as_tensor(high, dtype=torch.float64)
        self.lo = torch.where(self.log, torch.log10(lo), lo)
        self.hi = torch.where(self.log, torch.log10(hi), hi)

    def to_params(self, u: torch.Tensor) -> torch.Tensor:
        x = self.lo + u * (self.hi - self.lo)
        return torch.where(self.log, 10.0**x, x)

    def to_unit(self, p: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.log, torch.log10(torch.clamp(p, min=1e-300)), p)
        return torch.clamp((x - self.lo) / (self.hi - self.lo), 0.0, 1.0)


def fit_spectra(
    counts: np.ndarray,
    exposure: np.ndarray | float,
    folder: Folder,
    model: Component | None = None,
    background: np.ndarray | None = None,
    background_error: np.ndarray | None = None,
    background_exposure: np.ndarray | float | None = None,
    init: np.ndarray | None = None,
    bounds: np.ndarray | None = None,
    n_starts: int = 5,
    n_candidates: int = 64,
    max_iter: int = 200,
    tol: float = 1e-3,
    band_kev: tuple[float, float] = (0.3, 10.0),
    seed: int = 0,
    batch_size: int = 1024,
) -> FitResult:
    """Fit every spectrum with ``model`` by minimising XSPEC ``pgstat``.

    Args:
        counts: [N, G] observed source-region counts per bin of ``folder``'s grouping.
        exposure: [N] or scalar source exposure, s.
        folder: the response folding (its ``counts_rate`` gives the model counts s^-1).
        model: the forward model (default ``SourceModel()``); any component works, e.g. an
            :class:`~fspnet.physics.XspecModel`, since the Jacobian is by finite differences.
        background: [N, G] background counts, or ``None`` (Cash statistic).
        background_error: [N, G] Gaussian errors of ``background`` (default ``sqrt(max(B, 1))``).
        background_exposure: effective background exposure(s), s (see :func:`pgstat`).
        init: [N, P] starting parameters (e.g. network predictions), or ``None``.
        bounds: [P, 2] fit bounds in physical units (default: the model's bounds).
        n_starts: random starts per spectrum in addition to ``init``: the best ``n_starts``
            of ``n_candidates`` random draws by statistic.
        n_candidates: random parameter draws screened for the starts.
        max_iter: Levenberg-Marquardt iterations at most.
        tol: converged when the Newton decrement (expected further decrease) is below this.
        band_kev: bins whose centre lies in this band enter the statistic.
        seed: seed of the random starts.
        batch_size: spectra (times starts) fitted together; bounds the memory.

    Returns:
        The :class:`FitResult`.

    Example:
        >>> result = fit_spectra(counts, 1000.0, Folder(dtype=torch.float64))  # doctest: +SKIP
        >>> result.params.shape, result.reduced_stat.mean()  # doctest: +SKIP
    """
    from fspnet.physics import SourceModel

    model = SourceModel() if model is None else model
    if folder.dtype != torch.float64:  # finite differences need the float64 product
        from fspnet.response import Folder as _Folder

        folder = _Folder(folder.response, folder.model_edges, folder.grouping, folder.detectors, dtype=torch.float64)
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    n = counts_t.shape[0]
    p = model.n_params
    exp_t = torch.as_tensor(np.broadcast_to(np.asarray(exposure, dtype=np.float64), (n,)).copy())
    bkg_t = None if background is None else torch.as_tensor(np.asarray(background), dtype=torch.float64)
    bkg_err_t = None if background_error is None else torch.as_tensor(np.asarray(background_error), dtype=torch.float64)
    if background is not None:
        tb = exp_t if background_exposure is None else np.asarray(background_exposure, dtype=np.float64)
        bkg_exp_t = torch.as_tensor(np.broadcast_to(np.asarray(tb), (n,)).copy())
    else:
        bkg_exp_t = None
    b = model.bounds.numpy() if bounds is None else np.asarray(bounds, dtype=np.float64)
    log = np.zeros(p, dtype=bool)
    log[list(model.log_params)] = True
    tr = _Transform(b[:, 0], b[:, 1], log)
    centres = torch.as_tensor(folder.energy_centres)
    mask = ((centres >= band_kev[0]) & (centres <= band_kev[1])).to(torch.float64)
    dof = float(mask.sum()) - p
    edges = folder.model_edges
    evaluations = 0

    def rate_of(z: torch.Tensor) -> torch.Tensor:
        nonlocal evaluations
        evaluations += len(z)
        with torch.no_grad():
            return folder.counts_rate(model(edges, tr.to_params(z)))

    def select(x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
        return None if x is None else x[idx]

    def stat_of(rate: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return pgstat_gradient(
            rate, counts_t[idx], exp_t[idx], select(bkg_t, idx), select(bkg_err_t, idx), select(bkg_exp_t, idx), mask
        )

    # Starting points: init plus the best n_starts of n_candidates random draws per spectrum.
    gen = torch.Generator().manual_seed(seed)
    starts: list[torch.Tensor] = []
    if init is not None:
        starts.append(tr.to_unit(torch.as_tensor(np.asarray(init), dtype=torch.float64)))
    if n_starts > 0 or init is None:
        k = max(n_starts, 1 if init is None else 0)
        cand = max(n_candidates, k)
        zc = 0.05 + 0.9 * torch.rand(n, cand, p, generator=gen, dtype=torch.float64)  # interior of the box
        scores = torch.empty(n, cand, dtype=torch.float64)
        for j in range(cand):
            for lo in range(0, n, batch_size):
                idx = torch.arange(lo, min(lo + batch_size, n))
                scores[idx, j] = stat_of(rate_of(zc[idx, j]), idx)[0]
        best = torch.argsort(torch.nan_to_num(scores, nan=math.inf), dim=1)[:, :k]
        for j in range(k):
            starts.append(zc[torch.arange(n), best[:, j]])
    z_all = torch.stack(starts, dim=1)  # [N, S, P]
    s = z_all.shape[1]
    flat_z = z_all.reshape(n * s, p)
    owner = torch.arange(n).repeat_interleave(s)  # spectrum index of each start
    out_z = flat_z.clone()
    out_stat = torch.full((n * s,), math.inf, dtype=torch.float64)
    out_iter = torch.zeros(n * s, dtype=torch.int64)
    out_conv = torch.zeros(n * s, dtype=torch.bool)
    for lo in range(0, n * s, batch_size):
        sl = slice(lo, min(lo + batch_size, n * s))
        z, st, it, conv = _levenberg_marquardt(flat_z[sl], owner[sl], rate_of, stat_of, max_iter, tol)
        out_z[sl], out_stat[sl], out_iter[sl], out_conv[sl] = z, st, it, conv
    stat = out_stat.reshape(n, s)
    win = torch.argmin(torch.nan_to_num(stat, nan=math.inf), dim=1)
    rows = torch.arange(n) * s + win
    best_stat = out_stat[rows]
    return FitResult(
        params=tr.to_params(out_z[rows]).numpy(),
        stat=best_stat.numpy(),
        reduced_stat=(best_stat / dof).numpy(),
        n_iter=out_iter[rows].numpy(),
        converged=out_conv[rows].numpy(),
        n_evaluations=evaluations,
    )


def _levenberg_marquardt(
    z: torch.Tensor,
    owner: torch.Tensor,
    rate_of: tp.Callable[[torch.Tensor], torch.Tensor],
    stat_of: tp.Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    max_iter: int,
    tol: float,
    step: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched, box-projected LM over rows of ``z`` [B, P] in [0, 1]; ``owner`` [B] maps rows to spectra."""
    b, p = z.shape
    z = z.clone()
    lam = torch.full((b,), 1e-3, dtype=torch.float64)
    stat = stat_of(rate_of(z), owner)[0]
    n_iter = torch.zeros(b, dtype=torch.int64)
    done = torch.zeros(b, dtype=torch.bool)
    converged = torch.zeros(b, dtype=torch.bool)
    eye = torch.eye(p, dtype=torch.float64)
    for _ in range(max_iter):
        act = torch.nonzero(~done).flatten()
        if act.numel() == 0:
            break
        za, own = z[act], owner[act]
        rate = rate_of(za)  # [A, G]
        _, grad, fisher = stat_of(rate, own)
        # Jacobian d rate / d u by differences kept inside the box (one-sided at a bound).
        up = (za.unsqueeze(1) + step * eye).clamp(0.0, 1.0)  # [A, P, P]
        dn = (za.unsqueeze(1) - step * eye).clamp(0.0, 1.0)
        r = rate_of(torch.cat([up, dn], dim=1).reshape(-1, p)).reshape(len(act), 2 * p, -1)
        width = torch.diagonal(up - dn, dim1=1, dim2=2)  # [A, P]
        jac = ((r[:, :p] - r[:, p:]) / width.unsqueeze(-1)).transpose(1, 2)  # [A, G, P]
        g = torch.einsum("agp,ag->ap", jac, grad)
        h = torch.einsum("agp,ag,agq->apq", jac, fisher, jac)
        # Parameters at a bound that the gradient pushes outwards are held there this step.
        held = ((za <= 0.0) & (g > 0)) | ((za >= 1.0) & (g < 0))  # [A, P]
        free = (~held).to(h.dtype)
        g = g * free
        h = h * free.unsqueeze(1) * free.unsqueeze(2) + torch.diag_embed(1.0 - free)
        diag = torch.diagonal(h, dim1=1, dim2=2)
        ridge = 1e-10 * diag.sum(dim=1).clamp(min=1e-30)[:, None, None] * eye
        # Newton decrement g^T H^-1 g / 2: the decrease an undamped step would still bring.
        newton = torch.linalg.solve(h + ridge, -g.unsqueeze(-1)).squeeze(-1)
        decrement = torch.nan_to_num(-(g * newton).sum(dim=1) / 2, nan=math.inf)
        at_min = decrement < tol
        converged[act] = at_min
        damp = lam[act, None, None] * torch.diag_embed(diag)
        delta = torch.linalg.solve(h + damp + ridge, -g.unsqueeze(-1)).squeeze(-1)
        z_new = (za + torch.nan_to_num(delta)).clamp(0.0, 1.0)
        s_new = stat_of(rate_of(z_new), own)[0]
        better = torch.isfinite(s_new) & (s_new < stat[act]) & ~at_min
        z[act] = torch.where(better.unsqueeze(1), z_new, za)
        stat[act] = torch.where(better, s_new, stat[act])
        lam[act] = torch.where(better, lam[act] / 3, lam[act] * 4).clamp(1e-12, 1e12)
        n_iter[act] += (~at_min).long()
        done[act] = at_min | (lam[act] >= 1e10)  # converged, or no step improves any more
    return z, stat, n_iter, converged
