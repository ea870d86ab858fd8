"""Timing: the encoder per spectrum against the traditional fit per spectrum, on this machine.

The traditional fit is timed two ways: one spectrum at a time (as XSPEC fits) and batched
(every spectrum of the sample advancing together, :func:`fspnet.evaluate.fit_spectra`'s fast
path). The speed-up is quoted three ways:

- ``encoder``: fit per spectrum / encoder per spectrum;
- ``same_level``: the time the fit needs to reach the encoder's median reduced PGStat
  (its iteration limit raised 1, 2, 4, ... until its median is as good) / encoder per spectrum;
- ``refined``: fit per spectrum / (encoder + short fit) per spectrum, where encoder + short
  fit lands at (about) the fit's own PGStat level.
"""

from __future__ import annotations

import time
import typing as tp

import numpy as np
import torch

from fspnet.evaluate._context import Observed, Physics
from fspnet.evaluate._spectral import run_fit

if tp.TYPE_CHECKING:
    from fspnet.train import Run

__all__ = ["fit_ladder", "time_encoder"]


def time_encoder(run: Run, spectra: np.ndarray, device: str = "cpu", repeats: int = 3) -> float:
    """Seconds per spectrum of :func:`fspnet.predict.predict` on ``spectra`` (best of ``repeats``, after a warm-up)."""
    from fspnet.predict import predict

    predict(run, spectra[: min(len(spectra), 8)], device)  # warm-up: allocations, kernels
    best = float("inf")
    for _ in range(repeats):
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        predict(run, spectra, device)  # includes the transforms and the copy back to numpy
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best / max(len(spectra), 1)


def fit_ladder(
    physics: Physics,
    obs: Observed,
    rows: np.ndarray,
    init: np.ndarray,
    max_iter: int,
    target: float,
    progress: bool = True,
) -> tuple[list[dict[str, float]], float, bool]:
    """Fit ``rows`` one spectrum at a time with iteration limits 1, 2, 4, ... up to ``max_iter``.

    Rungs stop doubling once the median reduced PGStat reaches ``target``; the full
    ``max_iter`` rung is always run (it is the traditional fit's sequential timing).

    Returns:
        ``(rungs, seconds_to_target, reached)``: each rung is ``{max_iter, median, s_per_spectrum}``;
        ``seconds_to_target`` is the per-spectrum time of the first rung at or below ``target``
        (the full fit's time when none is, with ``reached`` False).
    """
    limits = []
    k = 1
    while k < max_iter:
        limits.append(k)
        k *= 2
    limits.append(max_iter)
    rungs: list[dict[str, float]] = []
    to_target: float | None = None
    for limit in limits:
        if to_target is not None and limit != max_iter:
            continue  # the target is reached: only the full fit is still needed
        res = run_fit(physics, obs, rows, init, limit, desc=f"fit ladder ({limit} iterations)", progress=progress, chunk=1)
        med = float(np.nanmedian(res.reduced_stat)) if len(rows) else float("nan")
        per = res.elapsed_s / max(len(rows), 1)
        rungs.append({"max_iter": limit, "median": med, "s_per_spectrum": per})
        if to_target is None and med <= target:
            to_target = per
    reached = to_target is not None
    return rungs, (to_target if reached else rungs[-1]["s_per_spectrum"]), reached
