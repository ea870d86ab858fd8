"""XSPEC's ``pgstat``: Poisson source counts with a Gaussian background profiled out per bin.

For bin ``i`` with observed source-region counts ``S``, background counts ``B`` with Gaussian
error ``sigma`` (counts), source exposure ``t_s``, effective background exposure ``t_b`` (the
background exposure times ``BACKSCAL_b / BACKSCAL_s``, so that the background rate in the
source region is ``B / t_b``) and model rate ``m`` (counts s^-1), the likelihood is maximised
over the background rate ``f`` (XSPEC manual, appendix "Statistics in XSPEC")::

    d = t_s sigma^2 - t_b B + t_b^2 m
    f = (-d + sqrt(d^2 + 4 t_b^2 (sigma^2 S - t_s sigma^2 m + t_b B m))) / (2 t_b^2)
    W = 2 [t_s (m + f) - S ln(t_s (m + f)) + (B - t_b f)^2 / (2 sigma^2) - S (1 - ln S)]

and for ``S = 0``: ``f = B / t_b - sigma^2 t_s / t_b^2``, i.e.
``W = 2 [t_s m + B t_s / t_b - sigma^2 t_s^2 / (2 t_b^2)]``.

A background rate cannot be negative, so, as XSPEC does for ``S = 0``, the profiled ``f`` is
clipped at zero: where the formula gives ``f < 0`` the statistic is evaluated at ``f = 0``,
``W = 2 [t_s m + B^2 / (2 sigma^2)]`` for ``S = 0`` and
``W = 2 [t_s m - S ln(t_s m) + B^2 / (2 sigma^2) - S (1 - ln S)]`` for ``S > 0``. ``W`` is
convex in ``f``, so the clipped value is the minimum over ``f >= 0`` (the constrained
profile), and the statistic stays >= 0. For example ``m = 1e-4``, ``S = 0``, ``t_s = t_b =
1000``, ``B = 0``, ``sigma = 1`` gives 0.2 (unclipped it would be -0.8). Without a background
it is the Cash statistic ``2 [t_s m - S ln(t_s m) - S (1 - ln S)]``. The reduced statistic
divides by the number of bins in the band (0.3-10 keV) minus the number of free parameters.
"""

from __future__ import annotations

import torch

__all__ = ["pgstat", "pgstat_gradient", "reduced_pgstat"]

_TINY = 1e-300


def _profile(
    m: torch.Tensor, s: torch.Tensor, b: torch.Tensor, sigma2: torch.Tensor, ts: torch.Tensor, tb: torch.Tensor
) -> torch.Tensor:
    d = ts * sigma2 - tb * b + tb**2 * m
    disc = d**2 + 4 * tb**2 * (sigma2 * s - ts * sigma2 * m + tb * b * m)
    f = (-d + torch.sqrt(torch.clamp(disc, min=0.0))) / (2 * tb**2)
    f_zero = b / tb - sigma2 * ts / tb**2
    # A background rate is not negative: clip at zero (XSPEC's S = 0 rule; W is convex in f,
    # so this is the minimum over f >= 0 in both branches).
    return torch.clamp(torch.where(s > 0, f, f_zero), min=0.0)


def _terms(
    rate: torch.Tensor,
    counts: torch.Tensor,
    exposure: torch.Tensor,
    background: torch.Tensor | None,
    background_error: torch.Tensor | None,
    background_exposure: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin statistic [..., C] and the profiled background rate f (zeros without background)."""
    ts = exposure.unsqueeze(-1) if exposure.dim() else exposure
    s = counts
    s_log_s = torch.where(s > 0, s * torch.log(torch.clamp(s, min=_TINY)), torch.zeros_like(s))
    if background is None:
        mu = ts * rate
        w = 2 * (mu - s * torch.log(torch.clamp(mu, min=_TINY)) - s + s_log_s)
        return w, torch.zeros_like(rate)
    assert background_exposure is not None
    tb = background_exposure.unsqueeze(-1) if background_exposure.dim() else background_exposure
    b = background
    sigma2 = background_error**2 if background_error is not None else torch.clamp(b, min=1.0)
    sigma2 = torch.clamp(sigma2, min=_TINY)
    with torch.no_grad():  # envelope theorem: dW/dm does not need df/dm
        f = _profile(rate.detach(), s, b, sigma2, ts, tb)
    mu = ts * (rate + f)
    w = 2 * (mu - s * torch.log(torch.clamp(mu, min=_TINY)) + (b - tb * f) ** 2 / (2 * sigma2) - s + s_log_s)
    return w, f


def pgstat(
    rate: torch.Tensor,
    counts: torch.Tensor,
    exposure: torch.Tensor | float,
    background: torch.Tensor | None = None,
    background_error: torch.Tensor | None = None,
    background_exposure: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """XSPEC ``pgstat`` per spectrum (``cstat`` when there is no background).

    Args:
        rate: [N, C] model count rate per bin, counts s^-1 (all detectors, not per keV).
        counts: [N, C] observed source-region counts.
        exposure: [N] or scalar source exposure, s.
        background: [N, C] background counts, or ``None``.
        background_error: [N, C] Gaussian one-sigma error of ``background`` in counts
            (default ``sqrt(max(B, 1))``).
        background_exposure: [N] or scalar effective background exposure, s (exposure times
            ``BACKSCAL_b / BACKSCAL_s``; defaults to ``exposure``).
        mask: [C] or [N, C] bins to sum (e.g. 0.3-10 keV); default all.

    Returns:
        [N] statistic (differentiable with respect to ``rate``).

    Example:
        >>> r = torch.full((1, 3), 2.0)
        >>> float(pgstat(r, torch.full((1, 3), 20.0), 10.0))
        0.0
    """
    rate = torch.as_tensor(rate, dtype=torch.float64)
    counts = torch.as_tensor(counts, dtype=torch.float64)
    ts = torch.as_tensor(exposure, dtype=torch.float64)
    tb = None
    if background is not None:
        background = torch.as_tensor(background, dtype=torch.float64)
        tb = ts if background_exposure is None else torch.as_tensor(background_exposure, dtype=torch.float64)
        if background_error is not None:
            background_error = torch.as_tensor(background_error, dtype=torch.float64)
    w, _ = _terms(rate, counts, ts, background, background_error, tb)
    if mask is not None:
        w = w * torch.as_tensor(mask, dtype=w.dtype)
    return w.sum(dim=-1)


def pgstat_gradient(
    rate: torch.Tensor,
    counts: torch.Tensor,
    exposure: torch.Tensor,
    background: torch.Tensor | None = None,
    background_error: torch.Tensor | None = None,
    background_exposure: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin pieces a Gauss-Newton fit needs: statistic [N], dW/dm [N, C] and Fisher weight [N, C].

    Bins outside ``mask`` ([C] 0/1) contribute nothing to any of the three.

    ``dW/dm = 2 t_s (1 - S / (t_s (m + f)))`` (the profiled ``f`` drops out by the envelope
    theorem) and the expected curvature is ``2 t_s^2 / mu`` with ``mu = t_s (m + f)``.
    """
    ts = exposure.unsqueeze(-1) if exposure.dim() else exposure
    w, f = _terms(rate, counts, exposure, background, background_error, background_exposure)
    mu = torch.clamp(ts * (rate + f), min=1e-10)
    grad = 2 * ts * (1 - counts / mu)
    fisher = 2 * ts**2 / torch.clamp(mu, min=1.0)
    if mask is not None:
        w, grad, fisher = w * mask, grad * mask, fisher * mask
    return w.sum(dim=-1), grad, fisher


def reduced_pgstat(
    rate: torch.Tensor,
    counts: torch.Tensor,
    exposure: torch.Tensor | float,
    background: torch.Tensor | None = None,
    background_error: torch.Tensor | None = None,
    background_exposure: torch.Tensor | float | None = None,
    energy_kev: torch.Tensor | None = None,
    band_kev: tuple[float, float] = (0.3, 10.0),
    n_params: int = 5,
) -> torch.Tensor:
    """``pgstat`` over the bins whose centre lies in ``band_kev``, divided by (bins - ``n_params``).

    Args:
        energy_kev: [C] bin centres, keV; ``None`` uses every bin.
        band_kev: energy band, keV (FSP-Net's 0.3-10).
        n_params: free parameters of the fit.
        Others: as :func:`pgstat`.

    Returns:
        [N] reduced statistic.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if energy_kev is None:
        mask = torch.ones(counts.shape[-1], dtype=torch.float64)
    else:
        e = torch.as_tensor(energy_kev, dtype=torch.float64)
        mask = ((e >= band_kev[0]) & (e <= band_kev[1])).to(torch.float64)
    dof = float(mask.sum()) - n_params
    if dof <= 0:
        raise ValueError(
            f"reduced_pgstat: {int(mask.sum())} bins in {band_kev} keV leave no degrees of freedom for {n_params} parameters"
        )
    stat = pgstat(rate, counts, exposure, background, background_error, background_exposure, mask=mask)
    return stat / dof
