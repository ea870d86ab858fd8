"""Timing: the encoder per spectrum against the traditional fit per spectrum, on this machine.

The traditional fit is timed two ways: one spectrum at a time (as XSPEC fits) and batched
(every spectrum of the sample advancing together, :func:`fspnet.evaluate.fit_spectra`'s fast
path). The speed-up is quoted three ways:

- ``encoder``: fit per spectrum / encoder per spectrum;
- ``same_level``: the time the fit needs to reach the encoder's median reduced PGStat
  (its iteration limit raised 1, 2, 4, ... until its median is as good) / encoder per spectrum;
- ``refined``: fit per spectrum / (encoder + short fit) per spectrum, where encoder + short
  fit lands at (about) the fit's own PGStat level.

:class:`TimingSection` is the report section.
"""

from __future__ import annotations

import dataclasses
import time
import typing as tp

import numpy as np
import torch

from fspnet.evaluate._context import EvalContext, Observed, Physics
from fspnet.evaluate._report import Report
from fspnet.evaluate._spectral import PGStatSection, run_fit

if tp.TYPE_CHECKING:
    from fspnet.rundir import Run

__all__ = ["FitTiming", "TimingSection", "fit_ladder", "time_encoder"]

#: spectra in the batch the encoder is timed on
ENCODER_BATCH = 4096


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
    if to_target is None:
        return rungs, rungs[-1]["s_per_spectrum"], False
    return rungs, to_target, True


@dataclasses.dataclass
class FitTiming:
    """The traditional fit's timings against the encoder's, seconds per spectrum (see the module docstring)."""

    n_timing: int
    fit_s_per_spectrum: float
    fit_batched_s_per_spectrum: float
    short_fit_s_per_spectrum: float
    short_fit_batched_s_per_spectrum: float
    encoder_level_median: float
    fit_s_to_encoder_level: float
    fit_reaches_encoder_level: bool
    ladder: list[dict[str, float]]


@dataclasses.dataclass
class TimingSection:
    """Encoder against the traditional fit, per spectrum, on this machine (summary key ``timing``).

    Args:
        device: torch device of the encoder.
        torch_threads: torch's CPU threads.
        encoder_s_per_spectrum: the encoder's batched prediction time.
        encoder_batch: spectra in that batch.
        fit: the fit's timings, ``None`` when the spectra cannot be fitted.
        short_iter: iterations of the short fit.
        fit_iter: iterations at most of the traditional fit.
        n_fit: spectra the batched fits ran on.
    """

    key: tp.ClassVar[str | None] = "timing"

    device: str
    torch_threads: int
    encoder_s_per_spectrum: float
    encoder_batch: int
    fit: FitTiming | None = None
    short_iter: int = 0
    fit_iter: int = 0
    n_fit: int = 0

    @classmethod
    def compute(cls, c: EvalContext, pgstat: PGStatSection) -> TimingSection:
        """Time the encoder; with a model, the fit one spectrum at a time (a ladder of iteration limits) too."""
        opt, k_enc = c.options, int(min(c.n, ENCODER_BATCH))
        enc = time_encoder(c.run, c.ds.spectra[:k_enc], opt.device)
        out = cls(opt.device, int(torch.get_num_threads()), enc, k_enc, None, opt.short_iter, opt.fit_iter, len(pgstat.rows))
        if c.physics is None or c.obs is None or "fit" not in pgstat.fits:
            return out
        rows, fits = pgstat.rows, pgstat.fits
        t_rows = rows[: min(opt.n_timing, len(rows))]
        k = len(t_rows)
        level = float(np.nanmedian(pgstat.levels["encoder"][:k]))
        rungs, to_level, reached = fit_ladder(c.physics, c.obs, t_rows, c.defaults(k), opt.fit_iter, level, opt.progress)
        short = run_fit(
            c.physics, c.obs, t_rows, c.pred[t_rows], opt.short_iter, "short fit, one at a time", opt.progress, chunk=1
        )
        out.fit = FitTiming(
            n_timing=k,
            fit_s_per_spectrum=rungs[-1]["s_per_spectrum"],
            fit_batched_s_per_spectrum=fits["fit"].elapsed_s / max(len(rows), 1),
            short_fit_s_per_spectrum=short.elapsed_s / max(k, 1),
            short_fit_batched_s_per_spectrum=fits["encoder_fit"].elapsed_s / max(len(rows), 1),
            encoder_level_median=level,
            fit_s_to_encoder_level=to_level,
            fit_reaches_encoder_level=reached,
            ladder=rungs,
        )
        return out

    @property
    def speedup_encoder(self) -> float | None:
        """Fit (one at a time) over encoder, per spectrum; ``None`` without a fit."""
        return None if self.fit is None else self.fit.fit_s_per_spectrum / self.encoder_s_per_spectrum

    def to_dict(self) -> dict[str, tp.Any]:
        """The timings and the four speed-ups (the fit's only when it ran)."""
        out: dict[str, tp.Any] = {
            "device": self.device,
            "torch_threads": self.torch_threads,
            "encoder_s_per_spectrum": self.encoder_s_per_spectrum,
            "encoder_batch": self.encoder_batch,
        }
        f, enc = self.fit, self.encoder_s_per_spectrum
        if f is not None:
            out.update(dataclasses.asdict(f))
            out.update(
                speedup_encoder=f.fit_s_per_spectrum / enc,
                speedup_encoder_batched_fit=f.fit_batched_s_per_spectrum / enc,
                speedup_same_level=f.fit_s_to_encoder_level / enc,
                speedup_refined=f.fit_s_per_spectrum / (enc + f.short_fit_s_per_spectrum),
            )
        return out

    def render(self, report: Report) -> None:
        """The "Timing" section: times, speed-ups and the fit's ladder."""
        report.section("timing", "Timing")
        rows: list[list[tp.Any]] = [
            ["encoder prediction (batched)", self.encoder_s_per_spectrum,
             f"batch of {self.encoder_batch} on {self.device}, {self.torch_threads} torch threads"],
        ]  # fmt: skip
        d, f = self.to_dict(), self.fit
        if f is not None:
            rows += [
                ["traditional fit, one spectrum at a time", f.fit_s_per_spectrum, f"{f.n_timing} spectra, ≤ {self.fit_iter} iterations"],
                ["traditional fit, batched", f.fit_batched_s_per_spectrum, f"{self.n_fit} spectra advancing together"],
                ["short fit from the encoder, one at a time", f.short_fit_s_per_spectrum, f"{self.short_iter} iterations"],
                ["fit until the encoder's median PGStat", f.fit_s_to_encoder_level,
                 f"level {f.encoder_level_median:.4g}; reached: {'yes' if f.fit_reaches_encoder_level else 'no (full fit time)'}"],
            ]  # fmt: skip
        report.table(["what", "seconds per spectrum", "how"], rows)
        if f is not None:
            report.table(
                ["speed-up of the encoder", "×"],
                [
                    ["over the fit (one at a time)", d["speedup_encoder"]],
                    ["over the fit (batched)", d["speedup_encoder_batched_fit"]],
                    ["at the same reduced-PGStat level (fit stopped at the encoder's median)", d["speedup_same_level"]],
                    ["encoder + short fit over the fit (both at about the fit's PGStat)", d["speedup_refined"]],
                ],
            )
            report.table(
                ["fit iteration limit", "median reduced PGStat", "seconds per spectrum"],
                [[r["max_iter"], r["median"], r["s_per_spectrum"]] for r in f.ladder],
                caption="The traditional fit, one spectrum at a time, with rising iteration limits",
            )
        report.text(
            "Timings are wall-clock on this machine and include the transforms; CPU times vary with the load of the machine.",
            note=True,
        )
