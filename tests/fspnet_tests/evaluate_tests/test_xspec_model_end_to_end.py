"""A second model end to end: XSPEC's tbabs*(diskbb+powerlaw) with four free parameters.

synthesize (xspec backend) -> train a decoder -> train an encoder -> predict -> evaluate. The
evaluation must show recovery and PGStat under that model's parameter names, through that
model: nothing may assume FSP-Net's five parameters or their names.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("xspectrampoline")

from fspnet.compare import compare
from fspnet.config import load_config
from fspnet.evaluate.__main__ import main as evaluate_main
from fspnet.predict import main as predict_main
from fspnet.synthesize import synthesize
from fspnet.train import train

pytestmark = [pytest.mark.xspec, pytest.mark.slow]

NAMES = ["diskbb.Tin", "diskbb.norm", "powerlaw.PhoIndex", "powerlaw.norm"]
GENERATOR = {
    "chunk_size": 128,
    "model": {"backend": "xspec", "expression": "tbabs*(diskbb+powerlaw)", "fixed": {"tbabs.nH": 0.3}},
    "sampling": {"params": {
        "diskbb.Tin": {"low": 0.2, "high": 2.0, "log": True},
        "diskbb.norm": {"low": 50.0, "high": 1e4, "log": True},
        "powerlaw.PhoIndex": {"low": 1.5, "high": 3.0},
        "powerlaw.norm": {"low": 0.1, "high": 5.0, "log": True},
    }},
}  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("xspec_e2e")
    train_h5, held_h5 = root / "train.h5", root / "heldout.h5"
    synthesize({**GENERATOR, "seed": 0}, n=320, out=train_h5, progress=False)
    synthesize({**GENERATOR, "seed": 1}, n=24, out=held_h5, progress=False)
    base = {
        "data.path": str(train_h5),
        "decoder.architecture": {"gru": False, "width": 32, "dense_layers": 1, "residual_layers": 1},
        "encoder.architecture": {"filters": [8], "dense_width": 32, "dense_layers": 1},
        "training.batch_size": 32,
        "training.learning_rate": 3e-3,
        "training.progress": False,
        "training.device": "cpu",
        "training.plots": False,
    }
    dec, enc = root / "decoder", root / "encoder"
    train(load_config(None, {**base, "stage": "decoder", "run_dir": str(dec), "training.epochs": 4}))
    train(
        load_config(
            None, {**base, "stage": "encoder", "run_dir": str(enc), "encoder.decoder_run": str(dec), "training.epochs": 6}
        )
    )
    pred = root / "pred.csv"
    assert predict_main(["--run", str(enc), "--data", str(held_h5), "--out", str(pred)]) == 0
    out = root / "evaluation"
    args = [
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
    assert evaluate_main(["--run", str(enc), "--data", str(held_h5), "--out", str(out), *args]) == 0
    return {"root": root, "pred": pred, "out": out, "encoder": enc, "heldout": held_h5}


def test_runs_and_predictions_carry_the_models_parameters(pipeline):
    info = (
        json.loads((pipeline["root"] / "encoder" / "run.json").read_text())
        if (pipeline["root"] / "encoder" / "run.json").is_file()
        else None
    )
    with open(pipeline["pred"]) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", *NAMES] and len(rows) == 25
    values = np.array(rows[1:], dtype=object)[:, 1:].astype(float)
    assert np.isfinite(values).all()
    if info is not None:
        assert info.get("param_names", NAMES) == NAMES


def test_evaluation_shows_recovery_and_pgstat_through_the_xspec_model(pipeline):
    summary = json.loads((pipeline["out"] / "summary.json").read_text())
    assert list(summary["recovery"]["methods"]["encoder"]) == NAMES
    assert summary["recovery"]["reference"] == "true"
    for key in ("encoder", "encoder_fit", "fit", "true"):
        assert key in summary["pgstat"], f"pgstat level {key} missing: {summary['pgstat']}"
    # The true parameters through the same XSPEC model give pgstat ~ 1 (Poisson data): the
    # evaluation really folds the data's model, not the native one.
    assert 0.5 < summary["pgstat"]["true"]["median"] < 2.0
    assert summary["pgstat"]["fit"]["median"] <= summary["pgstat"]["encoder"]["median"] + 1e-9
    html = (pipeline["out"] / "report.html").read_text()
    for name in NAMES:
        assert name in html


def test_compare_scores_pgstat_through_the_xspec_model(pipeline, tmp_path):
    (row,) = compare([pipeline["encoder"]], data=pipeline["heldout"], out=tmp_path, n_pgstat=4, timing_batch=8, progress=False)
    assert list(row["per_parameter_pct"]) == NAMES
    assert np.isfinite(row["median_reduced_pgstat"])


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. matplotlib's empty-legend warning on few spectra
def test_spectra_that_name_no_model_are_fitted_with_the_runs_training_model(pipeline, tmp_path):
    import dataclasses

    from fspnet.data import read_dataset, write_dataset
    from fspnet.evaluate import EvaluateOptions, evaluate

    ds = read_dataset(pipeline["heldout"])  # as real spectra arrive: no parameters, no generator
    write_dataset(tmp_path / "bare.h5", dataclasses.replace(ds, params=None, param_names=[], log_params=[], source={}))
    opt = EvaluateOptions(n_fit=4, fit_iter=4, short_iter=2, n_timing=1, n_saliency=8, n_plot=1, real=False, progress=False)
    summary = evaluate(pipeline["encoder"], tmp_path / "bare.h5", tmp_path / "evaluation", opt)
    assert "fit" in summary["pgstat"] and "encoder" in summary["pgstat"]
    assert summary["recovery"]["reference"] == "fitted"
    assert list(summary["recovery"]["methods"]["encoder"]) == NAMES
