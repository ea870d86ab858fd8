"""The shipped networks: package data, and ``python -m fspnet.predict --pretrained``."""

from __future__ import annotations

import configparser
import csv
import fnmatch
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fspnet.data import read_dataset
from fspnet.evaluate._context import param_infos
from fspnet.evaluate._recovery import recovery_stats
from fspnet.pretrained import PRETRAINED_DIR, load_pretrained, pretrained_dir

ROOT = Path(__file__).resolve().parents[3]


def test_every_shipped_file_is_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["fspnet"].split(",")]
    files = [p for p in PRETRAINED_DIR.iterdir() if p.name != "__pycache__"]
    assert all(p.is_file() for p in files), "package data globs do not recurse: keep fspnet/pretrained flat"
    for p in files:
        rel = f"pretrained/{p.name}"
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), rel
    assert sum(p.stat().st_size for p in files) < 5e6


def test_load_pretrained():
    run = load_pretrained()
    assert run.stage == "encoder" and run.decoder is not None
    assert run.param_names == ["nh", "gamma", "fsc", "kt_max", "norm"] and run.input_shape == (240,)
    assert not list(pretrained_dir().glob("*.pt"))  # weights ship as safetensors only


@pytest.mark.slow
def test_predict_pretrained_from_anywhere(synth_paths, tmp_path):
    out = tmp_path / "pred.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "fspnet.predict", "--pretrained", "--data", str(synth_paths["heldout"]), "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "wrote 24 predictions of nh, gamma, fsc, kt_max, norm" in proc.stdout
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["name", "nh", "gamma", "fsc", "kt_max", "norm"]
    pred = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    ds = read_dataset(synth_paths["heldout"])
    stats = recovery_stats(pred, ds.params, param_infos(ds.param_names, ds.log_params))
    # trained weights, not random ones: well inside a fifth of every range on fresh spectra
    assert all(s["median_abs_delta_pct"] < 20 for s in stats.values()), stats
