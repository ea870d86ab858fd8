"""Spectral quality: reduced pgstat of four parameter sets, and reconstructions with residuals.

Report sections: :class:`PGStatSection` (the four levels, the fits and ``fits.csv``),
:class:`BrightnessSection` (the levels by brightness decile) and
:class:`ReconstructionSection` (spectra drawn with the model curves).

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

from fspnet.evaluate._context import (
    BAND_KEV,
    EvalContext,
    Observed,
    Physics,
    reduced_stat,
)
from fspnet.evaluate._report import Report, write_csv

__all__ = [
    "LEVELS",
    "BrightnessSection",
    "FitRun",
    "PGStatSection",
    "ReconstructionSection",
    "plot_brightness",
    "plot_pgstat",
    "plot_reconstructions",
    "run_fit",
    "stat_summary",
]

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
        ax.hist(
            np.clip(np.log10(v), bins[0], bins[-1]),
            bins=bins.tolist(),
            histtype="step",
            lw=1.5,
            color=f"C{i}",
            label=f"{labels.get(key, key)}: median {np.median(v):.3g}",
        )
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


def sigma_of(
    obs: Observed, uncertainties: np.ndarray | None, rows: np.ndarray, detectors: float, widths: np.ndarray
) -> np.ndarray:
    """One-sigma uncertainties of spectra ``rows``: stored ones, else Poisson from the counts."""
    if uncertainties is not None:
        return np.asarray(uncertainties[rows], dtype=np.float64)
    t = obs.exposure[rows][:, None]
    return np.sqrt(np.maximum(obs.counts[rows], 1.0)) / (t * detectors * np.asarray(widths))


# --------------------------------------------------------------------------------------------
# report sections


@dataclasses.dataclass
class PGStatSection:
    """Spectral quality: reduced PGStat of (a)-(d) on the fitted sample (summary key ``pgstat``).

    Args:
        levels: level key (:data:`LEVELS`) -> [K] reduced PGStat of each spectrum of the sample.
        fits: ``encoder_fit`` (b) and ``fit`` (c) -> the fits behind them.
        rows: [K] indices of the sample in the data.
        short_iter: iterations of the short fit (b).
        fit_iter: iterations at most of the traditional fit (c).
        background_subtracted: whether the statistic runs on net counts (``None`` without a model).
        skipped: why there are no levels ("" when there are).
    """

    key: tp.ClassVar[str | None] = "pgstat"

    levels: dict[str, np.ndarray]
    fits: dict[str, FitRun]
    rows: np.ndarray
    short_iter: int
    fit_iter: int
    background_subtracted: bool | None = None
    skipped: str = ""

    @classmethod
    def compute(cls, c: EvalContext) -> PGStatSection:
        """Reduced PGStat of the encoder, encoder + short fit, a fit from the defaults and the truth."""
        opt, rows = c.options, c.rows
        levels: dict[str, np.ndarray] = {}
        fits: dict[str, FitRun] = {}
        if c.physics is not None and c.obs is not None:
            physics, obs, p = c.physics, c.obs, c.physics.model.n_params
            levels["encoder"] = reduced_stat(physics, c.pred[rows], obs.take(rows), p)
            fits["encoder_fit"] = run_fit(physics, obs, rows, c.pred[rows], opt.short_iter, "short fit (b)", opt.progress)
            levels["encoder_fit"] = fits["encoder_fit"].reduced_stat
            fits["fit"] = run_fit(physics, obs, rows, c.defaults(len(rows)), opt.fit_iter, "traditional fit (c)", opt.progress)
            levels["fit"] = fits["fit"].reduced_stat
            if c.true is not None:
                levels["true"] = reduced_stat(physics, c.true[rows], obs.take(rows), p)
        sub = None if c.obs is None else c.obs.background_subtracted
        return cls(levels, fits, rows, opt.short_iter, opt.fit_iter, sub, c.skipped)

    def median(self, level: str) -> float:
        """Median reduced PGStat of ``level`` (NaN when it was not measured)."""
        return stat_summary(self.levels[level])["median"] if level in self.levels else float("nan")

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{level: {median, mean, p16, p84, n}}`` in report order."""
        return {k: stat_summary(self.levels[k]) for k, _ in LEVELS if k in self.levels}

    def render(self, report: Report) -> None:
        """The "Spectral quality" section: table and histogram of the levels."""
        report.section("spectral", "Spectral quality")
        if not self.levels:
            if self.skipped:
                report.text(f"Skipped: {self.skipped}.", note=True)
            return
        stat = (
            "pgstat on net counts (approximate: the file keeps no background counts)"
            if self.background_subtracted
            else "cstat (pgstat without a background)"
        )
        report.text(
            f"Reduced statistic over 0.3–10 keV ({stat}), divided by (bins − free parameters), on {len(self.rows)} randomly "
            f"chosen spectra. (b) is {self.short_iter} Levenberg–Marquardt iterations from the encoder's parameters; (c) at "
            f"most {self.fit_iter} iterations from the model's default parameters."
        )
        labels = dict(LEVELS)
        report.table(
            ["parameter set", "median", "mean", "16th pct", "84th pct", "spectra"],
            [[labels[k], v["median"], v["mean"], v["p16"], v["p84"], v["n"]] for k, v in self.to_dict().items()],
        )
        report.figure(
            plot_pgstat({k: self.levels[k] for k, _ in LEVELS if k in self.levels}),
            "pgstat",
            "Distributions of reduced PGStat; dashed lines are medians.",
        )

    def write_csv(self, path: tp.Any, names: tp.Sequence[str], param_names: tp.Sequence[str]) -> None:
        """``fits.csv``: every spectrum of the sample with its levels and fitted parameters."""
        keys = [k for k, _ in LEVELS if k in self.levels]
        fitted = [k for k in ("encoder_fit", "fit") if k in self.fits]
        cols = ["name", *(f"pgstat_{k}" for k in keys)]
        for key in fitted:
            cols += [f"{key}_{p}" for p in param_names] + [f"{key}_iterations", f"{key}_converged"]
        table = []
        for j, i in enumerate(self.rows):
            row: list[tp.Any] = [names[i], *(float(self.levels[k][j]) for k in keys)]
            for key in fitted:
                f = self.fits[key]
                row += [*map(float, f.params[j]), int(f.n_iter[j]), bool(f.converged[j])]
            table.append(row)
        write_csv(path, cols, table)


#: what "brightness" means in :class:`BrightnessSection`
BRIGHTNESS = "source counts 0.3-10 keV"


@dataclasses.dataclass
class BrightnessSection:
    """Reduced PGStat by brightness decile (summary key ``pgstat_by_brightness``).

    Brightness is a spectrum's observed source counts over 0.3-10 keV. The sample, ranked by
    it, is cut into ten near-equal groups (fewer for a sample under ten) and each level's median
    is taken per group: it shows how bright a spectrum must be before (a), the encoder alone
    through the forward model, is good enough.

    Args:
        counts: [K] brightness of each spectrum of the sample.
        levels: level key -> [K] reduced PGStat (as :class:`PGStatSection`).
        n_bins: equal-count bins (10: deciles).
    """

    key: tp.ClassVar[str | None] = "pgstat_by_brightness"

    counts: np.ndarray
    levels: dict[str, np.ndarray]
    n_bins: int = 10

    @classmethod
    def compute(cls, c: EvalContext, pgstat: PGStatSection) -> BrightnessSection | None:
        """The sample's brightness with the levels of ``pgstat``; ``None`` without levels."""
        if not pgstat.levels or c.obs is None or c.physics is None:
            return None
        e = np.asarray(c.physics.folder.energy_centres, dtype=np.float64)
        band = (e >= BAND_KEV[0]) & (e <= BAND_KEV[1])
        counts = c.obs.counts[pgstat.rows][:, band].sum(axis=1)
        return cls(counts, dict(pgstat.levels))

    def bins(self) -> np.ndarray:
        """[K] the bin of every spectrum: ranks by counts cut into ``min(n_bins, K)`` near-equal groups."""
        k = len(self.counts)
        which = np.zeros(k, dtype=int)
        for b, idx in enumerate(np.array_split(np.argsort(self.counts, kind="stable"), max(min(self.n_bins, k), 1))):
            which[idx] = b
        return which

    def edges(self) -> np.ndarray:
        """[B + 1] counts: the faintest spectrum of every bin, then the brightest of the last."""
        which = self.bins()
        nb = int(which.max()) + 1 if len(which) else 0
        if not nb:
            return np.zeros(0)
        return np.array([*(self.counts[which == b].min() for b in range(nb)), self.counts.max()], dtype=np.float64)

    def medians(self) -> dict[str, list[float]]:
        """Level -> median reduced PGStat in every bin (NaN where a bin has no finite value)."""
        which, nb = self.bins(), max(len(self.edges()) - 1, 0)
        out = {}
        for k, _ in LEVELS:
            if k in self.levels:
                v = np.asarray(self.levels[k], dtype=np.float64)
                out[k] = [
                    float(np.nanmedian(v[which == b])) if np.any((which == b) & np.isfinite(v)) else float("nan")
                    for b in range(nb)
                ]
        return out

    def to_dict(self) -> dict[str, tp.Any]:
        """``{brightness, edges_counts, n_spectra, median: {level: [per bin]}}``."""
        which, nb = self.bins(), max(len(self.edges()) - 1, 0)
        return {
            "brightness": BRIGHTNESS,
            "edges_counts": self.edges().tolist(),
            "n_spectra": [int(np.sum(which == b)) for b in range(nb)],
            "median": self.medians(),
        }

    def render(self, report: Report) -> None:
        """The "Spectral quality by brightness" section: table and figure."""
        report.section("brightness", "Spectral quality by brightness")
        d = self.to_dict()
        report.text(
            f"Median reduced PGStat in {len(d['n_spectra'])} equal-count bins of the fitted spectra's {BRIGHTNESS}: where "
            "(a), the encoder alone through the forward model, comes close to (d), the encoder alone is good enough."
        )
        labels = dict(LEVELS)
        edges = d["edges_counts"]
        rows = [
            [f"{edges[b]:.4g}–{edges[b + 1]:.4g}", d["n_spectra"][b], *(d["median"][k][b] for k in d["median"])]
            for b in range(len(d["n_spectra"]))
        ]
        report.table(["counts 0.3–10 keV", "spectra", *(labels[k] for k in d["median"])], rows)
        report.figure(
            plot_brightness(self), "pgstat_brightness", "Median reduced PGStat per brightness bin, at the bins' median counts."
        )


def plot_brightness(section: BrightnessSection) -> tp.Any:
    """Median reduced PGStat of each level against the brightness bins' median counts (log-log)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 3.8), layout="constrained")
    which, nb = section.bins(), max(len(section.edges()) - 1, 0)
    x = [float(np.median(section.counts[which == b])) if np.any(which == b) else np.nan for b in range(nb)]
    labels = dict(LEVELS)
    for i, (k, med) in enumerate(section.medians().items()):
        ax.plot(x, med, "o-", ms=4, lw=1.2, color=f"C{i}", label=labels[k])
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{BRIGHTNESS} (bin median)")
    ax.set_ylabel("median reduced PGStat")
    ax.legend(fontsize=8)
    return fig


@dataclasses.dataclass
class ReconstructionSection:
    """A few spectra drawn with the decoder's reconstruction and the model at (a)-(c) (no summary key).

    Args:
        energy_kev: [C] bin centres.
        spectra: [K, C] observed spectra.
        sigma: [K, C] their one-sigma uncertainties.
        curves: label -> [K, C] model spectra in the same units.
        titles: K spectrum names.
    """

    key: tp.ClassVar[str | None] = None

    energy_kev: np.ndarray
    spectra: np.ndarray
    sigma: np.ndarray
    curves: dict[str, np.ndarray]
    titles: list[str]

    @classmethod
    def compute(cls, c: EvalContext, pgstat: PGStatSection) -> ReconstructionSection | None:
        """The first ``n_plot`` spectra of the sample; ``None`` when there is nothing to draw."""
        import torch

        ds, run, physics, fits = c.ds, c.run, c.physics, pgstat.fits
        n_plot = c.options.n_plot
        sample = c.rows[:n_plot] if len(c.rows) else np.arange(min(c.n, n_plot))
        curves: dict[str, np.ndarray] = {}
        if run.decoder is not None:
            with torch.no_grad():
                x = run.transforms.spectra(torch.as_tensor(np.asarray(ds.spectra[sample], dtype=np.float64))).float()
                dev = next(run.network.parameters()).device
                rec = run.decoder(run.network(x.to(dev)).flatten(1)).flatten(1)
                curves["decoder(encoder(x))"] = run.transforms.spectra.inverse(rec.double().cpu()).numpy()
        if physics is not None:
            curves["(a) encoder → model"] = physics.spectrum(physics.clip(c.pred[sample]))
            k = len(sample)
            if "encoder_fit" in fits:
                curves["(b) encoder + short fit"] = physics.spectrum(fits["encoder_fit"].params[:k])
            if "fit" in fits:
                curves["(c) traditional fit"] = physics.spectrum(fits["fit"].params[:k])
        if not curves:
            return None
        spectra = np.asarray(ds.spectra[sample], dtype=np.float64)
        if c.obs is not None and physics is not None:
            sigma = sigma_of(c.obs, ds.uncertainties, sample, physics.detectors, ds.energy_widths)
        elif ds.uncertainties is not None:
            sigma = np.asarray(ds.uncertainties[sample], dtype=np.float64)
        else:
            sigma = np.abs(spectra) * 0.05 + 1e-30
        return cls(np.asarray(ds.energy_centres, dtype=np.float64), spectra, sigma, curves, [c.names[i] for i in sample])

    def to_dict(self) -> None:
        """Nothing: the figure is the content."""
        return

    def render(self, report: Report) -> None:
        """The reconstruction figure (within the spectral-quality section)."""
        fig = plot_reconstructions(self.energy_kev, self.spectra, self.sigma, self.curves, self.titles)
        report.figure(
            fig,
            "reconstructions",
            "Spectra with reconstructions and model curves; residuals in units of the one-sigma uncertainty.",
        )
