"""Spectral quality: reduced pgstat of four parameter sets, and reconstructions with residuals.

(a) ``encoder``: the encoder's parameters through the physical forward model and response;
(b) ``encoder_fit``: (a) refined by a short traditional fit started from them;
(c) ``fit``: a traditional fit started from the model's default parameters (as XSPEC would);
(d) ``true``: the parameters the spectra were made with, when known.
"""

from __future__ import annotations

import dataclasses
import time
import typing as tp

import numpy as np
from tqdm import tqdm

from fspnet.evaluate._context import BAND_KEV, Observed, Physics

__all__ = ["FitRun", "LEVELS", "plot_pgstat", "plot_reconstructions", "run_fit", "stat_summary"]

#: key, label of each parameter set, in report order
LEVELS = (
    ("encoder", "(a) encoder"),
    ("encoder_fit", "(b) encoder + short fit"),
    ("fit", "(c) traditional fit"),
    ("true", "(d) true parameters"),
)


@dataclasses.dataclass
class FitRun:
    """Result of :func:`run_fit` over several chunks."""

    params: np.ndarray  # [N, P]
    reduced_stat: np.ndarray  # [N]
    n_iter: np.ndarray  # [N]
    converged: np.ndarray  # [N]
    elapsed_s: float  # wall-clock seconds of the fits alone


def run_fit(
    physics: Physics,
    obs: Observed,
    rows: np.ndarray,
    init: np.ndarray,
    max_iter: int,
    desc: str,
    progress: bool = True,
    chunk: int = 64,
    seed: int = 0,
) -> FitRun:
    """Fit ``obs`` rows ``rows`` with :func:`fspnet.evaluate.fit_spectra` from ``init`` [len(rows), P].

    Spectra are fitted ``chunk`` at a time (batched) so that a progress bar can follow.
    """
    from fspnet.evaluate._fit import fit_spectra

    parts: list[tp.Any] = []
    elapsed = 0.0
    with tqdm(total=len(rows), desc=desc, unit="spectra", disable=not progress, leave=False) as bar:
        for lo in range(0, len(rows), chunk):
            r = rows[lo : lo + chunk]
            start = time.perf_counter()
            res = fit_spectra(
                obs.counts[r], obs.exposure[r], physics.folder, physics.model,
                init=physics.clip(init[lo : lo + chunk]), n_starts=0, max_iter=max_iter, band_kev=BAND_KEV, seed=seed,
            )  # fmt: skip
            elapsed += time.perf_counter() - start
            parts.append(res)
            bar.update(len(r))
    if not parts:
        p = physics.model.n_params
        return FitRun(np.zeros((0, p)), np.zeros(0), np.zeros(0, int), np.zeros(0, bool), 0.0)
    return FitRun(
        params=np.concatenate([r.params for r in parts]),
        reduced_stat=np.concatenate([r.reduced_stat for r in parts]),
        n_iter=np.concatenate([r.n_iter for r in parts]),
        converged=np.concatenate([r.converged for r in parts]),
        elapsed_s=elapsed,
    )


def stat_summary(values: np.ndarray) -> dict[str, float]:
    """Median, mean and the 16th/84th percentiles of finite values, and how many there are."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"median": float("nan"), "mean": float("nan"), "p16": float("nan"), "p84": float("nan"), "n": 0}
    return {
        "median": float(np.median(v)),
        "mean": float(np.mean(v)),
        "p16": float(np.percentile(v, 16)),
        "p84": float(np.percentile(v, 84)),
        "n": int(v.size),
    }


def plot_pgstat(stats: dict[str, np.ndarray]) -> tp.Any:
    """Histograms of log10 reduced pgstat for each parameter set, medians marked (values past 1e6 in the last bin)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 3.8), layout="constrained")
    finite = [np.asarray(v)[np.isfinite(v) & (np.asarray(v) > 0)] for v in stats.values()]
    allv = np.concatenate(finite) if finite else np.array([1.0])
    lo, hi = np.log10(max(allv.min(), 1e-2)), np.log10(min(allv.max(), 1e6))
    bins = np.linspace(min(lo, -0.1), max(hi, 0.5), 50)
    labels = dict(LEVELS)
    for i, (key, v) in enumerate(stats.items()):
        v = np.asarray(v)
        v = v[np.isfinite(v) & (v > 0)]
        if not v.size:
            continue
        ax.hist(np.clip(np.log10(v), bins[0], bins[-1]), bins=bins, histtype="step", lw=1.5, color=f"C{i}", label=f"{labels.get(key, key)}: median {np.median(v):.3g}")
        ax.axvline(np.log10(np.median(v)), color=f"C{i}", ls="--", lw=0.8)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel("log10 reduced PGStat (0.3-10 keV)")
    ax.set_ylabel("spectra")
    ax.legend(fontsize=8)
    return fig


def plot_reconstructions(
    energy_kev: np.ndarray,
    spectra: np.ndarray,
    sigma: np.ndarray,
    curves: dict[str, np.ndarray],
    names: tp.Sequence[str],
) -> tp.Any:
    """Spectra (points with one-sigma bars) against model curves, with (data - model)/sigma below.

    Args:
        energy_kev: [C] bin centres.
        spectra: [K, C] observed spectra (counts s^-1 keV^-1 detector^-1).
        sigma: [K, C] one-sigma uncertainties.
        curves: label -> [K, C] model spectra in the same units.
        names: K titles.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    k = len(spectra)
    fig, axes = plt.subplots(
        2, max(k, 1), figsize=(max(3.8 * k, 7.0), 5.0), sharex="col", squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.4], "hspace": 0.05, "wspace": 0.32, "left": 0.07, "right": 0.99, "bottom": 0.1, "top": 0.93},
    )  # fmt: skip
    for i in range(k):
        top, bottom = axes[0, i], axes[1, i]
        y, s = np.asarray(spectra[i], float), np.asarray(sigma[i], float)
        pos = y > 0
        top.errorbar(energy_kev[pos], y[pos], yerr=s[pos], fmt=".", ms=2, lw=0.5, color="k", label="data")
        for j, (label, c) in enumerate(curves.items()):
            m = np.asarray(c[i], float)
            top.plot(energy_kev, m, "-", lw=1, color=f"C{j}", label=label)
            with np.errstate(divide="ignore", invalid="ignore"):
                bottom.plot(energy_kev, (y - m) / s, "-", lw=0.7, color=f"C{j}")
        top.set_xscale("log")
        if np.any(pos):
            top.set_yscale("log")
            top.set_ylim(max(y[pos].min() * 0.3, y[pos].max() * 1e-7), y[pos].max() * 3)
        for axis in (top.xaxis, top.yaxis, bottom.xaxis):
            axis.set_minor_locator(NullLocator())
        bottom.axhline(0, color="grey", lw=0.6)
        bottom.set_ylim(-8, 8)
        bottom.set_xlabel("energy (keV)")
        top.set_title(str(names[i]), fontsize=9)
    axes[0, 0].set_ylabel("counts s$^{-1}$ keV$^{-1}$ det$^{-1}$")
    axes[1, 0].set_ylabel("(data - model) / σ")
    axes[0, 0].legend(fontsize=7)
    return fig


def sigma_of(obs: Observed, uncertainties: np.ndarray | None, rows: np.ndarray, detectors: float, widths: np.ndarray) -> np.ndarray:
    """One-sigma uncertainties of spectra ``rows``: stored ones, else Poisson from the counts."""
    if uncertainties is not None:
        return np.asarray(uncertainties[rows], dtype=np.float64)
    t = obs.exposure[rows][:, None]
    return np.sqrt(np.maximum(obs.counts[rows], 1.0)) / (t * detectors * np.asarray(widths))
