"""``python -m hpo.report``: one self-contained ``report.html``, ``best_params.json``/``.yaml``
and a terminal summary.

The HTML inlines plotly.js, so it opens offline (on a login node, from an e-mail). It holds
Optuna's figures (optimisation history, parameter importances, parallel coordinates,
intermediate values with pruned trials visible, slice, contour of the most important
parameters, timeline, and the Pareto front for multi-objective studies), a sortable table of
every trial, and the final-training summary written by :mod:`hpo.train_best`. The study
itself is left untouched, so ``optuna-dashboard`` and the ``optuna`` CLI read it as before.

``best_params.json`` holds ``{"params": {name: value}, "paths": {name: dotted.path}, "seed": s,
"config": {...}, ...}`` (see :func:`hpo.collate.best_params`): ``config`` is the whole config the
best trial trained with, which ``python -m fspnet.train --hyperparams best_params.json`` trains.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import math
import sys
import typing as tp
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hpo._heartbeat import RETRY_HISTORY_KEY, reap_dead_trials
from hpo.collate import best_params  # re-exported: hpo.report.best_params
from hpo.errors import HpoError
from hpo.study import (
    StudyConfig,
    add_override_arguments,
    bind_study_dir,
    load_study_config,
    mask_url,
    open_study,
    override_list,
    storage_url,
)
from runtools.io import write_json, write_text

__all__ = ["FIGURES", "best_params", "main", "report", "retry_of", "summary_text"]

_LOG = logging.getLogger(__name__)

#: Figure ids in the report, in order, with their titles.
FIGURES = {
    "history": "Optimisation history",
    "importances": "Parameter importances",
    "parallel": "Parallel coordinates",
    "intermediate": "Intermediate values (learning curves; pruned trials included)",
    "slice": "Slice",
    "contour": "Contour of the most important parameters",
    "pareto": "Pareto front",
    "timeline": "Timeline",
}


def _figures(cfg: StudyConfig, study: optuna.Study) -> dict[str, tuple[tp.Any | None, str]]:
    """``{id: (figure or None, note)}``; a figure Optuna cannot draw yet gets a note instead."""
    import optuna.visualization as vis

    multi = cfg.multi_objective
    target: dict[str, tp.Any] = {"target_name": cfg.metrics[0]}
    if multi:
        target["target"] = lambda t: t.values[0]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out: dict[str, tuple[tp.Any | None, str]] = {}
    top: list[str] = []
    if len(complete) >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study, target=target.get("target"))
            top = list(importances)[:3]
        except (ValueError, RuntimeError) as e:
            _LOG.info("no importances: %s", e)

    def attempt(key: str, make: tp.Callable[[], tp.Any], need: int = 1) -> None:
        if len(complete) < need:
            out[key] = (None, f"needs at least {need} completed trial(s); the study has {len(complete)}")
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's advisory warnings about importances
                out[key] = (make(), "")
        except Exception as e:  # Optuna refuses some plots for some studies; say why
            out[key] = (None, f"not available: {e}")

    attempt("history", lambda: vis.plot_optimization_history(study, **target))
    attempt("importances", lambda: vis.plot_param_importances(study, **target), need=2)
    attempt("parallel", lambda: vis.plot_parallel_coordinate(study, **target))
    if multi:
        out["intermediate"] = (None, "intermediate values are not reported for multi-objective studies")
    else:
        attempt("intermediate", lambda: vis.plot_intermediate_values(study), need=0)
    attempt("slice", lambda: vis.plot_slice(study, **target))
    if len(top) >= 2:
        attempt("contour", lambda: vis.plot_contour(study, params=top, **target), need=2)
    else:
        out["contour"] = (None, "needs two or more parameters with importances (two completed trials)")
    if multi:
        attempt("pareto", lambda: vis.plot_pareto_front(study, target_names=cfg.metrics))
    attempt("timeline", lambda: vis.plot_timeline(study), need=0)
    return out


def _fmt(v: tp.Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.5g}"
    return "" if v is None else str(v)


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the trial that ``trial`` retries (Optuna's ``retry_history``), or ``None``."""
    history = trial.system_attrs.get(RETRY_HISTORY_KEY) or []
    return int(history[-1]) if history else None


def _trials_table(cfg: StudyConfig, trials: list[FrozenTrial]) -> str:
    names = [p.name for p in cfg.tune_params if p.state]
    head = ["#", "state", *cfg.metrics, *names, "epochs", "duration (s)", "worker", "retry of", "error"]
    rows = []
    for t in trials:
        values = list(t.values) if t.values else [None] * len(cfg.metrics)
        if t.state == TrialState.PRUNED and t.intermediate_values and len(cfg.metrics) == 1:
            values = [t.intermediate_values[max(t.intermediate_values)]]
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        result = t.user_attrs.get("result", {})
        cells = [
            t.number,
            t.state.name,
            *values,
            *(t.params.get(n) for n in names),
            result.get("epochs"),
            duration,
            result.get("worker", ""),
            retry_of(t),
            t.user_attrs.get("error", ""),
        ]
        tds = "".join(f'<td data-v="{html.escape(_fmt(c))}">{html.escape(_fmt(c))}</td>' for c in cells)
        rows.append(f'<tr class="{t.state.name.lower()}">{tds}</tr>')
    ths = "".join(f'<th onclick="sortTable(this)">{html.escape(h)}</th>' for h in head)
    return f'<table id="trials" class="sortable"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


_SCRIPT = """
function sortTable(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const i = Array.from(th.parentNode.children).indexOf(th);
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const v = r.children[i].dataset.v; const n = parseFloat(v);
                     return v === '' ? null : (isNaN(n) || String(n) !== v && isNaN(Number(v)) ? v : n); };
  Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null) return 1; if (y === null) return -1;
    const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c;
  }).forEach(r => body.appendChild(r));
}
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; }
section { margin: 2em 0; } .note { color: #888; font-style: italic; }
table { border-collapse: collapse; font-size: 0.85em; } th { cursor: pointer; background: #eee; position: sticky; top: 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
tr.pruned td { color: #888; } tr.fail td { color: #b00; } tr.running td { color: #06c; }
"""


def report(
    cfg: StudyConfig, study: optuna.Study | None = None, *, out: str | Path | None = None, storage: str | None = None
) -> Path:
    """Write ``report.html``, ``best_params.json`` and ``best_params.yaml``; return the HTML path.

    Args:
        cfg: the validated study.
        study: the loaded study (default: opened from ``storage`` or ``cfg.storage``).
        out: output folder (default ``<output_dir>/<study>``).
        storage: a storage URL replacing the file's.
    """
    from plotly.offline import get_plotlyjs

    if study is None:
        study = open_study(cfg, storage)
    bind_study_dir(cfg, study, storage)
    reap_dead_trials(study)
    out_dir = Path(out) if out is not None else cfg.study_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    best = best_params(cfg, study)
    if best is not None:
        write_json(out_dir / "best_params.json", best)
        write_text(out_dir / "best_params.yaml", yaml.safe_dump(best, sort_keys=False))

    sections = []
    for key, (fig, note) in _figures(cfg, study).items():
        body = (
            fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{key}")
            if fig is not None
            else f'<p class="note">{html.escape(note)}</p>'
        )
        sections.append(f'<section id="fig-{key}"><h2>{html.escape(FIGURES[key])}</h2>{body}</section>')
    count_text = _count_text(trials)
    best_html = "<p>No completed trial yet.</p>"
    if best is not None:
        items = "".join(
            f"<li><code>{html.escape(k)}</code> ({html.escape(best['paths'].get(k, ''))}) = {html.escape(_fmt(v))}</li>"
            for k, v in best["params"].items()
        )
        vals = ", ".join(f"{m} = {_fmt(v)}" for m, v in zip(cfg.metrics, best["values"]))
        best_html = f"<p>Trial {best['trial']}: {html.escape(vals)}</p><ul>{items}</ul>"
    final = _final_training_html(cfg)
    from hpo._report_trials import TrialsSection

    trials_html = TrialsSection.compute(cfg, study, out_dir).to_html()
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(cfg.name)} — hpo report</title>
<style>{_STYLE}</style><script type="text/javascript">{get_plotlyjs()}</script><script>{_SCRIPT}</script></head>
<body><h1>Study {html.escape(cfg.name)}</h1>
<p class="meta">{html.escape(count_text)} · {" / ".join(f"{d} {m}" for d, m in zip(cfg.directions, cfg.metrics))} ·
sampler {html.escape(cfg.sampler["name"])} · pruner {html.escape(cfg.pruner["name"])} · trainable {html.escape(cfg.trainable)} ·
storage {html.escape(mask_url(storage or cfg.storage))} · {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</p>
<section id="best"><h2>Best trial</h2>{best_html}</section>
{final}
{"".join(sections)}
{trials_html}
<section id="trials-table"><h2>Trials</h2><p class="meta">Click a column to sort.</p>{_trials_table(cfg, trials)}</section>
</body></html>
"""
    path = out_dir / "report.html"
    write_text(path, page)
    return path


def _final_training_html(cfg: StudyConfig) -> str:
    path = cfg.study_dir / "best" / "summary.json"
    if not path.is_file():
        return ""
    s = json.loads(path.read_text())
    rows = "".join(
        f"<tr><td>{r['seed']}</td><td>{_fmt(r['value'])}</td><td>{html.escape(r['run_dir'])}</td></tr>" for r in s["runs"]
    )
    return (
        f'<section id="final-training"><h2>Final training (best params, {len(s["runs"])} seeds)</h2>'
        f"<p>{html.escape(s['metric'])} = {_fmt(s['mean'])} ± {_fmt(s['std'])} (mean ± std)</p>"
        f"<table><thead><tr><th>seed</th><th>{html.escape(s['metric'])}</th><th>run dir</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _count_text(trials: list[FrozenTrial]) -> str:
    """``"7 complete, 2 pruned, 1 fail, 1 retried"``: trials per state, and how many are retries."""
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    retried = sum(retry_of(t) is not None for t in trials)
    if retried:
        parts.append(f"{retried} retried")
    return ", ".join(parts)


def summary_text(cfg: StudyConfig, study: optuna.Study) -> str:
    """A few lines for the terminal: counts per state, the best trial and its params."""
    trials = study.get_trials(deepcopy=False)
    lines = [f"study {cfg.name}: {len(trials)} trials ({_count_text(trials)})"]
    best = best_params(cfg, study)
    if best is None:
        lines.append("no completed trial yet")
    else:
        vals = ", ".join(f"{m}={_fmt(v)}" for m, v in zip(cfg.metrics, best["values"]))
        lines.append(f"best: trial {best['trial']} with {vals}")
        lines += [f"  {k} = {_fmt(v)}" for k, v in best["params"].items()]
    return "\n".join(lines)


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.report`` / ``hpo-report``."""
    parser = argparse.ArgumentParser(prog="hpo-report", description="Render a study's report.html and best_params.json.")
    parser.add_argument("--study", required=True, help="study YAML")
    parser.add_argument("--out", default=None, help="output folder (default <output_dir>/<study>)")
    parser.add_argument("--storage", default=None, help="storage URL replacing the file's (default $HPO_STORAGE)")
    parser.add_argument("--log-level", default="WARNING")
    add_override_arguments(parser, search=False)  # the study the workers ran with their --set
    args = parser.parse_args(argv)
    args.storage = storage_url(args.storage)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        cfg = load_study_config(args.study, storage=args.storage, check_trainable=False, overrides=override_list(args))
        study = open_study(cfg, args.storage)
        path = report(cfg, study, out=args.out, storage=args.storage)
    except HpoError as e:
        print(f"hpo-report: error: {e}", file=sys.stderr)
        return 2
    print(summary_text(cfg, study))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
