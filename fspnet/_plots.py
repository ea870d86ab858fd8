"""Training plots written into a run directory (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os
import typing as tp

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from runtools.io import atomic_path  # noqa: E402

__all__ = ["plot_loss_curve", "plot_reconstruction"]


def _save(fig: tp.Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_loss_curve(
    history: tp.Sequence[tp.Mapping[str, float]], path: str | os.PathLike[str], best_epoch: int | None = None
) -> None:
    """Plot training and validation loss per epoch (log scale), stage boundaries and the best epoch.

    Args:
        history: one metrics dict per epoch with ``epoch``, ``train_loss``, ``val_loss`` and
            optionally ``stage``.
        path: PNG file to write.
        best_epoch: epoch of the best validation loss, marked with a dot.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    epochs = np.array([h["epoch"] for h in history])
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        values = np.array([h.get(key, np.nan) for h in history], dtype=float)
        ax.plot(epochs, values, style, label=key.replace("_", " "))
    stages = [h.get("stage", 0) for h in history]
    for i in range(1, len(stages)):
        if stages[i] != stages[i - 1]:
            ax.axvline(epochs[i] - 0.5, color="grey", lw=0.8, ls=":")
    if best_epoch is not None:
        best = [h for h in history if h["epoch"] == best_epoch]
        if best:
            ax.plot([best_epoch], [best[0]["val_loss"]], "o", color="C3", label=f"best (epoch {best_epoch})")
    if len(history) and np.all(np.array([h["train_loss"] for h in history]) > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_reconstruction(
    energy_kev: np.ndarray,
    spectra: np.ndarray,
    reconstructions: np.ndarray,
    path: str | os.PathLike[str],
    *,
    names: tp.Sequence[str] | None = None,
    title: str = "",
    ylabel: str = "counts s$^{-1}$ keV$^{-1}$ det$^{-1}$",
) -> None:
    """Plot a few spectra against their reconstructions, with residuals, in physical units.

    Args:
        energy_kev: [C] bin centres in keV.
        spectra: [K, C] true spectra (K ≤ 4 are drawn).
        reconstructions: [K, C] network output in the same units.
        path: PNG file to write.
        names: K labels.
        title: figure title.
        ylabel: y-axis label.
    """
    k = min(len(spectra), 4)
    fig, axes = plt.subplots(
        2,
        max(k, 1),
        figsize=(3.6 * max(k, 1), 4.6),
        sharex="col",
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05, "wspace": 0.3, "left": 0.07, "right": 0.98, "bottom": 0.12},
    )
    for i in range(k):
        top, bottom = axes[0, i], axes[1, i]
        y, r = np.asarray(spectra[i], dtype=float), np.asarray(reconstructions[i], dtype=float)
        positive = y > 0
        top.plot(energy_kev[positive], y[positive], ".", ms=2.5, color="k", label="spectrum")
        top.plot(energy_kev, r, "-", color="C0", label="reconstruction")
        top.set_xscale("log")
        if np.all(r > 0):
            top.set_yscale("log")
        for axis in (top.xaxis, top.yaxis, bottom.xaxis):
            axis.set_minor_locator(NullLocator())  # minor log ticks cost more than the plot
        top.set_title(names[i] if names is not None else f"spectrum {i}", fontsize=9)
        with np.errstate(divide="ignore", invalid="ignore"):
            bottom.plot(energy_kev, np.where(positive, (r - y) / np.abs(y), np.nan), "-", color="C1", lw=0.8)
        bottom.axhline(0, color="grey", lw=0.8)
        bottom.set_xlabel("energy (keV)")
    axes[0, 0].set_ylabel(ylabel)
    axes[1, 0].set_ylabel("(rec - true) / true")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)
