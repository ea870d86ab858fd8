"""Parameter recovery: predicted against reference (true or fitted) parameters, per parameter.

Statistics are taken in *transformed* units (log10 for log parameters, linear otherwise),
where FSP-Net's ranges are meaningful: ``Δ = predicted - reference``, its median absolute
value, a robust scatter (1.4826 × the median absolute deviation of Δ), the same two as a
percentage of the parameter's (log-)range, and the fraction of predictions pegged at a bound.
:class:`RecoverySection` is the report section (tables, figures and ``parameters.csv``).
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np

from fspnet.evaluate._context import PEG_FRACTION, EvalContext, ParamInfo
from fspnet.evaluate._goals import GOALS
from fspnet.evaluate._report import Report, mark, write_csv

if tp.TYPE_CHECKING:
    from fspnet.evaluate._spectral import PGStatSection

__all__ = ["RecoverySection", "plot_pairs", "plot_recovery", "plot_recovery_map", "plot_residuals", "recovery_stats"]

#: the statistics of one parameter, in :func:`recovery_stats`' order
STAT_KEYS = (
    "median_abs_delta", "scatter", "bias", "range", "median_abs_delta_pct", "scatter_pct", "pegged_fraction", "goal_met", "n",
)  # fmt: skip


def recovery_stats(pred: np.ndarray, ref: np.ndarray, infos: tp.Sequence[ParamInfo]) -> dict[str, dict[str, float]]:
    """Per-parameter recovery statistics (see the module docstring).

    Args:
        pred: [N, P] predicted physical parameters.
        ref: [N, P] reference physical parameters (true, or a traditional fit's).
        infos: the P parameter descriptions.

    Returns:
        ``{name: {median_abs_delta, scatter, bias, median_abs_delta_pct, scatter_pct, range,
        pegged_fraction, goal_met, n}}`` (``goal_met``: :data:`GOALS`' accuracy goal).
    """
    out: dict[str, dict[str, float]] = {}
    for j, info in enumerate(infos):
        d = info.to_axis(pred[:, j]) - info.to_axis(ref[:, j])
        d = d[np.isfinite(d)]
        span = info.span
        if d.size:
            med_abs = float(np.median(np.abs(d)))
            bias = float(np.median(d))
            scatter = float(1.4826 * np.median(np.abs(d - bias)))
        else:
            med_abs = bias = scatter = float("nan")
        pct = 100.0 * med_abs / span
        out[info.name] = {
            "median_abs_delta": med_abs,
            "scatter": scatter,
            "bias": bias,
            "range": span,
            "median_abs_delta_pct": pct,
            "scatter_pct": 100.0 * scatter / span,
            "pegged_fraction": float(np.mean(info.pegged(pred[:, j]))) if len(pred) else float("nan"),
            "goal_met": GOALS.recovery_met(pct),
            "n": int(d.size),
        }
    return out


def plot_recovery(pred: np.ndarray, ref: np.ndarray, infos: tp.Sequence[ParamInfo], ref_label: str) -> tp.Any:
    """Predicted against reference, one panel per parameter; log axes for log parameters, pegged values marked."""
    import matplotlib.pyplot as plt

    p = len(infos)
    fig, axes = plt.subplots(1, p, figsize=(3.3 * p, 3.4), layout="constrained", squeeze=False)
    for j, info in enumerate(infos):
        ax = axes[0, j]
        x, y = ref[:, j], pred[:, j]
        peg = info.pegged(y)
        ok = np.isfinite(x) & np.isfinite(y)
        if info.log:
            ok &= (x > 0) & (y > 0)
        ax.plot(x[ok & ~peg], y[ok & ~peg], ".", ms=2, alpha=0.5, color="C0", rasterized=True)
        if np.any(ok & peg):
            ax.plot(x[ok & peg], y[ok & peg], "x", ms=3, color="C3", label=f"pegged ({int(np.sum(peg))})")
            ax.legend(fontsize=7, loc="upper left")
        ax.plot([info.low, info.high], [info.low, info.high], "-", color="k", lw=0.8)
        if info.log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        unit = f" ({info.unit})" if info.unit else ""
        ax.set_xlabel(f"{ref_label} {info.name}{unit}", fontsize=8)
        ax.set_ylabel(f"predicted {info.name}", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


def plot_residuals(
    pred: np.ndarray, ref: np.ndarray, infos: tp.Sequence[ParamInfo], stats: dict[str, dict[str, float]]
) -> tp.Any:
    """Histograms of Δ in transformed units, with the median |Δ| and the accuracy goal (:data:`GOALS`) marked."""
    import matplotlib.pyplot as plt

    p = len(infos)
    fig, axes = plt.subplots(1, p, figsize=(3.3 * p, 3.0), layout="constrained", squeeze=False)
    for j, info in enumerate(infos):
        ax = axes[0, j]
        d = info.to_axis(pred[:, j]) - info.to_axis(ref[:, j])
        d = d[np.isfinite(d)]
        lim = 0.25 * info.span
        ax.hist(np.clip(d, -lim, lim), bins=60, range=(-lim, lim), color="C0", alpha=0.8)
        s = stats[info.name]
        goal = GOALS.recovery_pct / 100 * info.span
        for sign in (-1, 1):
            ax.axvline(sign * s["median_abs_delta"], color="C1", lw=1)
            ax.axvline(sign * goal, color="C3", lw=0.8, ls="--")
        ax.set_xlabel(f"Δ {'log10 ' if info.log else ''}{info.name}", fontsize=8)
        ax.set_title(f"median |Δ| {s['median_abs_delta_pct']:.2f}% of range", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("spectra")
    return fig


def plot_recovery_map(
    methods: dict[str, tuple[np.ndarray, np.ndarray]], infos: tp.Sequence[ParamInfo], n_bins: int = 6
) -> tp.Any:
    """Median |Δ| (% of range) of every parameter (rows) in bins of every reference parameter (columns).

    Where a traditional fit is drawn too, the regions where both it and the encoder lose a
    parameter are the data's own limit (a parameter the spectra do not constrain), not the network's.

    Args:
        methods: ``{label: (pred [N, P], ref [N, P])}`` in physical units, e.g. the encoder and the fit.
        infos: the P parameter descriptions.
        n_bins: equal-count bins of each reference parameter.
    """
    import matplotlib.pyplot as plt

    p = len(infos)
    fig, axes = plt.subplots(p, p, figsize=(2.2 * p, 1.9 * p), layout="constrained", squeeze=False, sharey="row")
    for k, (label, (pred, ref)) in enumerate(methods.items()):
        err = np.stack([100 * np.abs(i.to_axis(pred[:, j]) - i.to_axis(ref[:, j])) / i.span for j, i in enumerate(infos)], 1)
        for c, info in enumerate(infos):
            x = info.to_axis(ref[:, c])
            ok = np.isfinite(x)
            edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, n_bins + 1))) if ok.sum() >= n_bins else np.array([])
            if edges.size < 2:
                continue
            which = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, edges.size - 2)
            centres = 0.5 * (edges[1:] + edges[:-1])
            for r in range(p):
                e = err[ok, r]
                med = [np.nanmedian(e[which == b]) if np.any(which == b) else np.nan for b in range(edges.size - 1)]
                axes[r, c].plot(centres, med, "o-", ms=3, lw=1, color=f"C{k}", label=label)
    for r, ri in enumerate(infos):
        for c, ci in enumerate(infos):
            ax = axes[r, c]
            ax.axhline(GOALS.recovery_pct, color="C3", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.tick_params(labelsize=6)
            if r == p - 1:
                ax.set_xlabel(f"true {'log ' if ci.log else ''}{ci.name}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"|Δ {ri.name}| % range", fontsize=7)
    if axes[0, 0].get_legend_handles_labels()[0]:  # too few spectra to bin: no curves, no legend
        axes[0, 0].legend(fontsize=6)
    return fig


def plot_pairs(pred: np.ndarray, ref: np.ndarray | None, infos: tp.Sequence[ParamInfo], max_points: int = 2000) -> tp.Any:
    """Corner plot of the predictions (and the reference, grey) in transformed units."""
    import matplotlib.pyplot as plt

    p = len(infos)
    n = len(pred)
    idx = np.random.default_rng(0).permutation(n)[:max_points]
    tp_ = np.stack([info.to_axis(pred[idx, j]) for j, info in enumerate(infos)], axis=1)
    tr = None if ref is None else np.stack([info.to_axis(ref[idx, j]) for j, info in enumerate(infos)], axis=1)
    fig, axes = plt.subplots(p, p, figsize=(2.0 * p, 2.0 * p), squeeze=False)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.08, bottom=0.08, right=0.98, top=0.98)
    labels = [f"{'log ' if i.log else ''}{i.name}" for i in infos]
    for r in range(p):
        for c in range(p):
            ax = axes[r, c]
            if c > r:
                ax.set_visible(False)
                continue
            if r == c:
                lo, hi = infos[r].to_axis(np.array([infos[r].low, infos[r].high]))
                bins = np.linspace(float(lo), float(hi), 40)
                if tr is not None:
                    ax.hist(tr[:, r], bins=bins, color="grey", alpha=0.5, label="reference")
                ax.hist(tp_[:, r], bins=bins, color="C0", alpha=0.7, histtype="step", label="predicted")
            else:
                if tr is not None:
                    ax.plot(tr[:, c], tr[:, r], ".", ms=1, color="grey", alpha=0.3, rasterized=True)
                ax.plot(tp_[:, c], tp_[:, r], ".", ms=1, color="C0", alpha=0.4, rasterized=True)
            ax.tick_params(labelsize=6)
            if r < p - 1:
                ax.set_xticklabels([])
            else:
                ax.set_xlabel(labels[c], fontsize=8)
            if c > 0 or r == 0:
                ax.set_yticklabels([])
            else:
                ax.set_ylabel(labels[r], fontsize=8)
    if tr is not None:
        axes[0, 0].legend(fontsize=6)
    return fig


_METHOD_LABELS = {"encoder": "encoder", "encoder_fit": "encoder + short fit", "fit": "traditional fit"}


@dataclasses.dataclass
class RecoverySection:
    """Parameter recovery against true parameters, or a traditional fit's (summary key ``recovery``).

    Args:
        reference: ``"true"``, ``"fitted"`` or ``None`` (nothing to compare with).
        methods: method (``encoder``, ``encoder_fit``, ``fit``) -> :func:`recovery_stats`.
        infos: the P parameter descriptions.
        pred: [M, P] the encoder's predictions of the spectra that have a reference.
        ref: [M, P] their reference parameters.
        fit_pair: the traditional fit's parameters and the true ones on the fitted sample, for the map.
    """

    key: tp.ClassVar[str | None] = "recovery"

    reference: str | None
    methods: dict[str, dict[str, dict[str, tp.Any]]]
    infos: list[ParamInfo]
    pred: np.ndarray | None = None
    ref: np.ndarray | None = None
    fit_pair: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def compute(cls, c: EvalContext, pgstat: PGStatSection) -> RecoverySection:
        """Against the true parameters when the data have them, else the traditional fit's (on its sample)."""
        fits, rows = pgstat.fits, pgstat.rows
        if c.true is not None:
            ref, ref_rows, label = c.true, np.arange(c.n), "true"
        elif "fit" in fits:
            ref, ref_rows, label = fits["fit"].params, rows, "fitted"
        else:
            return cls(None, {}, c.infos)
        pred = c.pred[ref_rows]
        methods = {"encoder": recovery_stats(pred, ref, c.infos)}
        fit_pair = None
        if c.true is not None:
            for key in ("encoder_fit", "fit"):
                if key in fits:
                    methods[key] = recovery_stats(fits[key].params, c.true[rows], c.infos)
            if "fit" in fits:
                fit_pair = (fits["fit"].params, c.true[rows])
        return cls(label, methods, c.infos, pred, ref, fit_pair)

    def encoder_pct(self) -> dict[str, float]:
        """The encoder's median |Δ| per parameter, % of the range (empty without a reference)."""
        return {k: float(v["median_abs_delta_pct"]) for k, v in self.methods.get("encoder", {}).items()}

    def to_dict(self) -> dict[str, tp.Any]:
        """``{reference, methods: {method: {parameter: statistics}}}``."""
        return {"reference": self.reference, "methods": self.methods}

    def render(self, report: Report) -> None:
        """The "Parameter recovery" section: table and four figures."""
        report.section("recovery", "Parameter recovery")
        if self.pred is None or self.ref is None:
            report.text("The data have no parameters and no fit could be made, so recovery cannot be measured.", note=True)
            return
        label = self.reference
        report.text(
            f"Predicted against {label} parameters. Δ = predicted − {label} in transformed units (log10 for "
            "log parameters); scatter is 1.4826 × MAD; percentages are of each parameter's (log-)range; "
            f"pegged = within {100 * PEG_FRACTION:g} % of the range of a bound (or beyond it). The documented "
            f"accuracy goal: {GOALS.recovery_text}."
        )
        table = []
        for method, stats in self.methods.items():
            for name, st in stats.items():
                table.append(
                    [_METHOD_LABELS.get(method, method), name, st["median_abs_delta"], st["scatter"], st["bias"],
                     st["median_abs_delta_pct"], st["scatter_pct"], st["pegged_fraction"],
                     mark(st["goal_met"]) if label == "true" else mark(None)]
                )  # fmt: skip
        report.table(
            ["method", "parameter", "median |Δ|", "scatter", "bias", "median |Δ| % range", "scatter % range", "pegged",
             f"≤ {GOALS.recovery_pct:g} %"],
            table,
        )  # fmt: skip
        report.figure(
            plot_recovery(self.pred, self.ref, self.infos, str(label)),
            "recovery",
            "Predicted against reference; red crosses are pegged predictions.",
        )
        report.figure(
            plot_residuals(self.pred, self.ref, self.infos, self.methods["encoder"]), "residuals",
            f"Δ distributions; orange: ± median |Δ|, red dashed: ± {GOALS.recovery_pct:g} % of the range (the accuracy goal).",
        )  # fmt: skip
        maps = {"encoder": (self.pred, self.ref)}
        if self.fit_pair is not None:
            maps["traditional fit"] = self.fit_pair
        report.figure(
            plot_recovery_map(maps, self.infos), "recovery_map",
            "Median |Δ| of each parameter (rows) in equal-count bins of each true parameter (columns); "
            f"red dashed: {GOALS.recovery_pct:g} % of the range. Where the traditional fit loses a parameter too, "
            "the spectra do not constrain it.",
        )  # fmt: skip
        report.figure(
            plot_pairs(self.pred, self.ref, self.infos),
            "pairs",
            "Pair plot of predictions (blue) and reference (grey), transformed units.",
        )

    def write_csv(self, path: tp.Any) -> None:
        """``parameters.csv``: one row per method and parameter."""
        rows = [[method, name, *(s[k] for k in STAT_KEYS)] for method, stats in self.methods.items() for name, s in stats.items()]
        header = ["method", "parameter", *(k + "_range" if k.endswith("_pct") else k for k in STAT_KEYS)]
        write_csv(path, header, rows)
