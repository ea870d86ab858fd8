"""The result tables of ``docs/campaign.md``, read from what the campaign's commands wrote.

    python scripts/campaign.py --tables      # rewrite the block between the page's result markers

Every number comes from a file a campaign step wrote: the study storages, ``best/summary.json``
of ``hpo.train_best``, the training results (``metrics.json``), ``fspnet.evaluate``'s
``summary.json`` and ``bench_pruning``'s ``pruning.json``. A missing file leaves its table out
with a line saying which step makes it, so the page can be refreshed at any point of the run.
"""

from __future__ import annotations

import json
import math
import statistics
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import TrialState

BEGIN, END = "<!-- campaign-results:begin -->", "<!-- campaign-results:end -->"
PARAMS = ("nh", "gamma", "fsc", "kt_max", "norm")
LABELS = {"nh": "N_H", "gamma": "Γ", "fsc": "f_sc", "kt_max": "kT_max", "norm": "norm"}
#: the goals of docs/campaign.md (% of range); None: no bound on that parameter
ENCODER_GOALS = {"nh": 0.48, "gamma": 3.5, "fsc": 3.0, "kt_max": 0.88, "norm": 0.85}


def _read(path: Path) -> dict[str, tp.Any] | None:
    try:
        return tp.cast(dict[str, tp.Any], json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _show(path: Path) -> str:
    """``path`` relative to the working folder (the repository root) where it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _num(v: tp.Any, fmt: str = ".4g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _mean_std(values: list[float], fmt: str = ".4g") -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return _num(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def study_rows(storages: tp.Mapping[str, Path]) -> str:
    """One row per study storage: trials by state, epochs run, wall time, best value, trial and params."""
    from hpo.collate import ranked_trials

    rows = []
    for label, db in storages.items():
        if not db.exists():
            rows.append([label, f"not run (`{_show(db)}` missing)", "", "", "", "", ""])
            continue
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        epochs = sum(len(t.intermediate_values) for t in trials)
        starts = [t.datetime_start for t in trials if t.datetime_start]
        ends = [t.datetime_complete for t in trials if t.datetime_complete]
        wall = (max(ends) - min(starts)).total_seconds() / 60 if starts and ends else math.nan
        ranked = ranked_trials(study)
        best = ranked[0] if ranked else None
        params = ", ".join(
            f"{k} {_num(v, '.3g') if isinstance(v, float) else v}" for k, v in (best.params if best else {}).items()
        )
        rows.append(
            [
                label,
                f"{len(trials)} ({count[TrialState.COMPLETE]} / {count[TrialState.PRUNED]} / {count[TrialState.FAIL]})",
                str(epochs),
                f"{wall:.1f} min",
                " ".join([_num(best.values[0] if best else None), *study.user_attrs.get("metrics", [])[:1]]),
                str(best.number if best else "–"),
                params,
            ]
        )
    head = [
        "study",
        "trials (complete / pruned / failed)",
        "epochs run",
        "wall",
        "best value (metric)",
        "best trial",
        "its parameters",
    ]
    return _table(head, rows)


def final_rows(summaries: tp.Mapping[str, Path]) -> str:
    """``hpo.train_best``'s ``summary.json`` of each winner: its study's metric per seed and mean ± std."""
    rows = []
    for label, path in summaries.items():
        s = _read(path)
        if s is None:
            rows.append([label, f"not run (`{_show(path)}` missing)", "", "", ""])
            continue
        values = [float(r["value"]) for r in s["runs"]]
        seeds = ", ".join(str(r["seed"]) for r in s["runs"])
        rows.append([label, str(s.get("metric", "")), _mean_std(values), seeds, ", ".join(_num(v) for v in values)])
    return _table(["network", "metric", "mean ± std", "seeds", "per seed"], rows)


def _final_metric(summary: Path, key: str) -> list[float]:
    """``key`` of every seed's result in ``hpo.train_best``'s ``summary.json``."""
    s = _read(summary) or {"runs": []}
    return [float(r["metrics"][key]) for r in s["runs"] if key in r.get("metrics", {})]


def decoder_rows(found: tp.Mapping[str, tuple[Path, str]], evals: Path) -> str:
    """Held-out reconstruction of every seed's found decoders and the default one, with the relative cost.

    ``found`` maps a column's label to the ``summary.json`` of its final trainings and to the
    ``<evals>/decoder-<kind>`` folder of their evaluations.
    """

    def col(kind: str, key: str) -> list[float]:
        values = []
        for path in sorted((evals / f"decoder-{kind}").glob("seed-*/summary.json")):
            s = _read(path)
            if s and s.get("decoder", {}).get(key) is not None:  # noise_floor: None before evaluations had it
                values.append(float(s["decoder"][key]))
        return values

    kinds = [kind for _, kind in found.values()]
    d_mse = col("default", "mse_transformed")
    rows = [
        [
            "held-out reconstruction MSE (scaled log spectra)",
            *(_mean_std(col(k, "mse_transformed")) for k in kinds),
            _mean_std(d_mse),
            "found ≥ 20 % below default",
        ],
        [
            "held-out MSE (physical units)",
            *(_mean_std(col(k, "mse_physical")) for k in kinds),
            _mean_std(col("default", "mse_physical")),
            "",
        ],
        [
            "µs per spectrum (CPU, 1 thread, absolute)",
            *(_mean_std(col(k, "us_per_spectrum"), ".1f") for k in kinds),
            _mean_std(col("default", "us_per_spectrum"), ".1f"),
            "",
        ],
        [
            "forward time / default decoder's (timed in alternation)",
            *(_mean_std(_final_metric(summary, "inference_cost"), ".3f") for summary, _ in found.values()),
            "1",
            "≤ 1",
        ],
        [
            "weights",
            *(_num(_first(evals, k, "n_weights"), "d") for k in kinds),
            _num(_first(evals, "default", "n_weights"), "d"),
            "",
        ],
    ]
    gains = [col(k, "mse_transformed") for k in kinds]
    if d_mse and any(gains):
        rows.append(
            [
                "MSE below the default's",
                *(f"{100 * (1 - statistics.mean(g) / statistics.mean(d_mse)):.1f} %" if g else "–" for g in gains),
                "",
                "≥ 20 %",
            ]
        )
    excess = {}
    for k in [*kinds, "default"]:
        mse, floor = col(k, "mse_transformed"), col(k, "noise_floor")
        excess[k] = [m - f for m, f in zip(mse, floor, strict=True)] if len(floor) == len(mse) else []
    if all(excess.values()):
        rows += [
            [
                "noise floor: an ideal decoder's held-out MSE",
                *(_mean_std(col(k, "noise_floor")) for k in kinds),
                _mean_std(col("default", "noise_floor")),
                "",
            ],
            ["MSE above the noise floor", *(_mean_std(excess[k]) for k in kinds), _mean_std(excess["default"]), ""],
            [
                "MSE above the floor below the default's",
                *(f"{100 * (1 - statistics.mean(excess[k]) / statistics.mean(excess['default'])):.1f} %" for k in kinds),
                "",
                "",
            ],
        ]
    return _table(["", *found, "FSP-Net's default decoder", "goal"], rows)


def _first(evals: Path, kind: str, key: str) -> tp.Any:
    s = _read(evals / f"decoder-{kind}" / "seed-0" / "summary.json")
    return None if s is None else s.get("decoder", {}).get(key)


def encoder_rows(evaluations: tp.Mapping[str, Path]) -> str:
    """Recovery, reduced PGStat (a)-(d), brightness deciles, timing and MAXI J1820+070 per encoder."""
    summaries = {k: _read(v / "summary.json") for k, v in evaluations.items()}
    missing = [f"`{_show(evaluations[k] / 'summary.json')}`" for k, s in summaries.items() if s is None]
    have = {k: s for k, s in summaries.items() if s is not None}
    out = []
    if missing:
        out.append(f"Not yet evaluated: {', '.join(missing)}.\n")
    if not have:
        return "\n".join(out)
    rows = []
    for k, s in have.items():
        pct = s["goals"]["recovery"]["per_parameter_pct"]
        rows.append([k] + [_num(pct[p], ".3g") for p in PARAMS])
    rows.append(["goal"] + [f"≤ {ENCODER_GOALS[p]}" for p in PARAMS])
    out.append("Median |Δ|, % of each parameter's range (2,000 held-out noisy spectra):\n")
    out.append(_table(["encoder"] + [LABELS[p] for p in PARAMS], rows))
    levels = [("encoder", "(a) encoder through the forward model"), ("encoder_fit", "(b) encoder + short fit"),
              ("fit", "(c) traditional fit"), ("true", "(d) true parameters")]  # fmt: skip
    rows = [[label] + [_num(s["pgstat"][lvl]["median"], ".4g") for s in have.values()] for lvl, label in levels]
    rows.append(
        ["(b) / (c)"] + [_num(s["pgstat"]["encoder_fit"]["median"] / s["pgstat"]["fit"]["median"], ".4f") for s in have.values()]
    )
    out.append("\nReduced PGStat, median over the spectra with fits (goal: (b) within 2 % of (c)):\n")
    out.append(_table(["reduced PGStat (median)"] + list(have), rows))
    rows = []
    for k, s in have.items():
        b = s.get("pgstat_by_brightness") or {}
        med = (b.get("median") or {}).get("encoder")
        if med:
            rows.append([k] + [_num(v, ".3g") for v in med])
    if rows:
        n = max(len(r) for r in rows) - 1
        out.append("\n(a), the encoder alone, median reduced PGStat by brightness decile (1: faintest):\n")
        out.append(_table(["encoder"] + [str(i + 1) for i in range(n)], rows))
    rows = [
        [k, _num(s["timing"]["encoder_s_per_spectrum"] * 1e6, ".1f"), _num(s["timing"]["fit_s_per_spectrum"] * 1e3, ".0f"),
         _num(s["timing"]["speedup_encoder"], ".0f")]
        for k, s in have.items()
    ]  # fmt: skip
    out.append("\nTiming on this CPU (1 thread):\n")
    out.append(_table(["encoder", "µs per spectrum", "traditional fit, ms per spectrum", "speed-up"], rows))
    rows = []
    for k, s in have.items():
        real = s.get("real") or {}
        if not real.get("available"):
            continue
        for method in ("encoder", "encoder_fit", "fit"):
            p = real["params"][method]
            rows.append(
                [f"{k}: {method.replace('_', ' + ')}"]
                + [_num(p[q], ".4g") for q in PARAMS]
                + [_num(real["pgstat"][method], ".5g")]
            )
    if rows:
        out.append("\nThe real NICER spectrum of MAXI J1820+070 (obs. 1200120194):\n")
        out.append(_table(["MAXI J1820+070"] + [LABELS[p] for p in PARAMS] + ["PGStat"], rows))
    return "\n".join(out)


def pruning_table(md: Path) -> str:
    """``bench_pruning``'s table (its ``pruning.md``), as it wrote it."""
    return md.read_text().strip() if md.exists() else f"Not run yet (`{_show(md)}` missing: the `pruning` step)."


def render(
    *, studies: tp.Mapping[str, Path], finals: tp.Mapping[str, Path], pruning: Path,
    found_decoders: tp.Mapping[str, tuple[Path, str]], evals: Path, encoders: tp.Mapping[str, Path],
) -> str:  # fmt: skip
    """The whole results block (Markdown)."""
    return "\n\n".join(
        [
            "### Studies\n\n" + study_rows(studies),
            "### Final training of the winners (`hpo.train_best`, the whole training file)\n\n" + final_rows(finals),
            "### Does pruning pay?\n\n" + pruning_table(pruning),
            "### Decoders on the held-out spectra (mean ± std over seeds)\n\n" + decoder_rows(found_decoders, evals),
            "### Encoders on the held-out spectra\n\n" + encoder_rows(encoders),
        ]
    )


def update_doc(doc: Path, block: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``doc`` (atomically)."""
    from runtools.io import write_text

    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} markers to put the results between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_text(doc, f"{head}{BEGIN}\n{block}\n{END}{tail}")
