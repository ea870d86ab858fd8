"""Line up several trained networks in one table and plot.

Command line::

    python -m fspnet.compare runs/encoder_a runs/encoder_b --data heldout.h5 --out comparison/

For every encoder run: its weights (encoder and the decoder it carries), parameter recovery
(median |Δ| as % of each parameter's (log-)range, and their mean), the median reduced PGStat
of its predictions through the forward model (0.3-10 keV), and prediction time per spectrum
on the CPU and, when one is present, the GPU. Without ``--data`` the accuracy and PGStat come
from the run's evaluation summary (``evaluation/summary.json`` written by
``python -m fspnet.evaluate``, or the ``evaluation.json`` shipped with the pre-trained networks)
when there is one. Each run is marked against the documented accuracy goal
(:data:`fspnet.evaluate.GOALS`). Writes ``compare.csv``, ``compare.png`` and a self-contained
``compare.html``.
"""

from __future__ import annotations

import argparse
import logging
import os
import typing as tp
from pathlib import Path

import numpy as np
import torch

from fspnet.errors import DataError, FspnetError

__all__ = ["compare", "main"]

log = logging.getLogger(__name__)

COLUMNS = (
    "run", "encoder_weights", "decoder_weights", "mean_median_abs_delta_pct", "worst_median_abs_delta_pct",
    "accuracy_goal_met", "median_reduced_pgstat", "cpu_s_per_spectrum", "gpu_s_per_spectrum", "source",
)  # fmt: skip

#: where a run keeps its evaluation summary, in order of preference
SUMMARY_FILES = ("evaluation/summary.json", "evaluation.json")


def _weights(module: torch.nn.Module | None) -> int:
    return 0 if module is None else int(sum(p.numel() for p in module.parameters()))


def _timing_input(run: tp.Any, spectra: np.ndarray | None, n: int) -> np.ndarray:
    """``n`` spectra in physical units: from the data, or drawn inside the run's scaled range."""
    if spectra is not None:
        reps = int(np.ceil(n / len(spectra)))
        return np.tile(spectra, (reps, 1))[:n]
    u = torch.rand(n, run.input_shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return run.transforms.spectra.inverse(u).numpy()


def compare(
    run_dirs: tp.Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "comparison",
    n_spectra: int = 1000,
    n_pgstat: int = 200,
    timing_batch: int = 4096,
    progress: bool = True,
) -> list[dict[str, tp.Any]]:
    """Compare encoder runs; write ``compare.csv``, ``compare.png`` and ``compare.html`` into ``out``.

    Args:
        run_dirs: encoder run directories.
        data: HDF5 dataset with parameters (held-out spectra) for accuracy and PGStat, or ``None``.
        out: output folder.
        n_spectra: spectra used for the accuracy.
        n_pgstat: spectra whose predictions go through the forward model for the PGStat.
        timing_batch: spectra per timed prediction.
        progress: show a progress bar over the runs.

    Returns:
        One row per run (the keys of :data:`COLUMNS`, plus ``per_parameter_pct``);
        ``accuracy_goal_met`` is ``None`` when the accuracy was not measured.

    Raises:
        DataError: naming the run directory or data file at fault.

    Example:
        >>> rows = compare(["runs/a", "runs/b"], "heldout.h5", "comparison/")  # doctest: +SKIP
        >>> [r["median_reduced_pgstat"] for r in rows]  # doctest: +SKIP
    """
    from tqdm import tqdm

    from fspnet.evaluate import GOALS, read_evaluation
    from fspnet.evaluate import _context as ctx
    from fspnet.evaluate._recovery import recovery_stats
    from fspnet.evaluate._timing import time_encoder
    from fspnet.predict import predict
    from fspnet.rundir import load_run

    if not run_dirs:
        raise DataError("compare: give at least one run directory")
    ds = physics = obs = None
    rows_acc = rows_stat = np.zeros(0, dtype=int)
    if data is not None:
        from fspnet.data import read_dataset

        path = Path(data)
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        ds = read_dataset(path)
        rows_acc = np.arange(min(len(ds), n_spectra))
        rows_stat = rows_acc[:n_pgstat]
        try:
            physics = ctx.make_physics(ds, str(path))
            obs = ctx.observed(ds, physics).take(rows_stat)
        except FspnetError as e:
            log.warning("PGStat left out: %s", e)
    gpu = torch.cuda.is_available()
    results = []
    for run_dir in tqdm(list(run_dirs), desc="compare", unit="run", disable=not progress):
        run = load_run(run_dir)
        if run.stage != "encoder":
            raise DataError(f"{run.path}: a {run.stage} run cannot be compared; give encoder runs")
        row: dict[str, tp.Any] = {
            "run": str(run.path),
            "encoder_weights": _weights(run.network),
            "decoder_weights": _weights(run.decoder),
            "mean_median_abs_delta_pct": float("nan"),
            "worst_median_abs_delta_pct": float("nan"),
            "accuracy_goal_met": None,
            "median_reduced_pgstat": float("nan"),
            "per_parameter_pct": {},
            "source": "",
        }
        names = list(run.transforms.param_names or run.param_names)
        if ds is not None:
            if ds.spectra.shape[1:] != tuple(run.input_shape):
                raise DataError(f"{data}: spectra have {ds.spectra.shape[1]} bins, but {run.path} expects {run.input_shape[0]}")
            pred = predict(run, ds.spectra[rows_acc])
            row["source"] = str(data)
            if ds.params is not None and list(ds.param_names) == names:
                infos = ctx.param_infos(names, run.transforms.params.log_params if run.transforms.params else [], ds)
                stats = recovery_stats(pred, ds.params[rows_acc], infos)
                row["per_parameter_pct"] = {k: v["median_abs_delta_pct"] for k, v in stats.items()}
            if physics is not None and obs is not None and tuple(names) == tuple(physics.model.param_names):
                row["median_reduced_pgstat"] = float(
                    np.nanmedian(ctx.reduced_stat(physics, pred[: len(rows_stat)], obs, physics.model.n_params))
                )
        else:
            summary = next((run.path / f for f in SUMMARY_FILES if (run.path / f).is_file()), None)
            if summary is not None:
                digest = read_evaluation(summary)
                row["per_parameter_pct"] = digest.per_parameter_pct
                row["median_reduced_pgstat"] = digest.median_reduced_pgstat("encoder")
                row["source"] = str(summary)
        pct = list(row["per_parameter_pct"].values())
        if pct:
            row["mean_median_abs_delta_pct"] = float(np.mean(pct))
            row["worst_median_abs_delta_pct"] = float(np.max(pct))
            row["accuracy_goal_met"] = GOALS.recovery_met(row["worst_median_abs_delta_pct"])
        x = _timing_input(run, None if ds is None else ds.spectra[rows_acc], timing_batch)
        row["cpu_s_per_spectrum"] = time_encoder(run, x, "cpu")
        row["gpu_s_per_spectrum"] = time_encoder(run, x, "cuda") if gpu else float("nan")
        run.network.to("cpu")
        results.append(row)
    _write(Path(out), results)
    return results


def _write(out: Path, rows: list[dict[str, tp.Any]]) -> None:
    from fspnet.evaluate import GOALS
    from fspnet.evaluate._report import Report, mark, write_csv

    out.mkdir(parents=True, exist_ok=True)
    params: list[str] = []
    for r in rows:
        params += [k for k in r["per_parameter_pct"] if k not in params]
    header = [*COLUMNS, *(f"median_abs_delta_pct_{p}" for p in params)]
    table = [[r[c] for c in COLUMNS] + [r["per_parameter_pct"].get(p, float("nan")) for p in params] for r in rows]
    write_csv(out / "compare.csv", header, table)
    report = Report(out, "FSP-Net network comparison")
    report.section("table", "Networks")
    labels = [_label(r["run"]) for r in rows]
    report.table(
        ["run", "encoder weights", "decoder weights", "mean median |Δ| % range", "worst % range", "accuracy goal",
         "median reduced PGStat", "CPU s/spectrum", "GPU s/spectrum"],
        [[lab, r["encoder_weights"], r["decoder_weights"], r["mean_median_abs_delta_pct"], r["worst_median_abs_delta_pct"],
          mark(r["accuracy_goal_met"]), r["median_reduced_pgstat"], r["cpu_s_per_spectrum"], r["gpu_s_per_spectrum"]]
         for lab, r in zip(labels, rows)],
    )  # fmt: skip
    report.text(f"Accuracy goal (documented accuracy and speed goals): {GOALS.recovery_text}.", note=True)
    if params:
        report.table(
            ["run", *params],
            [[lab, *(r["per_parameter_pct"].get(p, float("nan")) for p in params)] for lab, r in zip(labels, rows)],
            caption="median |Δ| as % of each (log-)range",
        )
    report.text(f"Accuracy and PGStat from: {', '.join(sorted({r['source'] or 'not measured' for r in rows}))}.", note=True)
    report.section("plot", "Plot")
    report.figure(_plot(rows, labels), "compare")
    report.write(out / "compare.html")


def _label(run: str) -> str:
    """``parent/name`` of a run directory: run folders are often all called ``encoder``."""
    p = Path(run)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _plot(rows: list[dict[str, tp.Any]], labels: list[str]) -> tp.Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.8), layout="constrained")
    x = np.arange(len(rows))
    panels = (
        ("mean_median_abs_delta_pct", "mean median |Δ| (% of range)"),
        ("median_reduced_pgstat", "median reduced PGStat (encoder)"),
        ("cpu_s_per_spectrum", "prediction s / spectrum"),
    )
    from fspnet.evaluate import GOALS

    worst = np.array([r["worst_median_abs_delta_pct"] for r in rows], dtype=float)
    if np.any(np.isfinite(worst)):  # the goal holds for every parameter: mark the worst one against it
        axes[0].plot(x, worst, "v", color="C1", label="worst parameter")
        axes[0].axhline(GOALS.recovery_pct, color="C3", lw=0.8, ls="--", label="accuracy goal")
        axes[0].legend(fontsize=8)
    for ax, (key, title) in zip(axes, panels):
        vals = np.array([r[key] for r in rows], dtype=float)
        ax.bar(
            x - (0.2 if key.startswith("cpu") else 0),
            np.nan_to_num(vals),
            width=0.4 if key.startswith("cpu") else 0.6,
            label="CPU" if key.startswith("cpu") else None,
        )
        if key.startswith("cpu"):
            gpu = np.array([r["gpu_s_per_spectrum"] for r in rows], dtype=float)
            if np.any(np.isfinite(gpu)):
                ax.bar(x + 0.2, np.nan_to_num(gpu), width=0.4, label="GPU")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    return fig


def _format_table(rows: list[dict[str, tp.Any]]) -> str:
    from fspnet.evaluate._report import fmt

    head = ["run", "weights", "mean |Δ|%", "worst |Δ|%", "goal", "PGStat", "CPU s/spec", "GPU s/spec"]
    body = [
        [_label(r["run"]), str(r["encoder_weights"] + r["decoder_weights"]), fmt(r["mean_median_abs_delta_pct"]),
         fmt(r["worst_median_abs_delta_pct"]), {True: "met", False: "NOT met"}.get(r["accuracy_goal_met"], "-"),
         fmt(r["median_reduced_pgstat"]), fmt(r["cpu_s_per_spectrum"]), fmt(r["gpu_s_per_spectrum"])]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m fspnet.compare``."""
    parser = argparse.ArgumentParser(prog="python -m fspnet.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="encoder run directories")
    parser.add_argument("--data", default=None, help="HDF5 dataset with parameters for accuracy and PGStat")
    parser.add_argument("--out", default="comparison", help="output folder [comparison]")
    parser.add_argument("--n-spectra", type=int, default=1000, help="spectra for the accuracy [1000]")
    parser.add_argument("--n-pgstat", type=int, default=200, help="spectra for the PGStat [200]")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rows = compare(args.runs, args.data, args.out, args.n_spectra, args.n_pgstat, progress=not args.no_progress)
    except FspnetError as e:
        parser.exit(2, f"fspnet-compare: error: {e}\n")
    print(_format_table(rows))
    print(f"wrote {Path(args.out) / 'compare.html'} and compare.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
