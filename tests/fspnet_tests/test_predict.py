"""fspnet.predict: parameters in physical units from an encoder run, as CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from fspnet.config import load_config
from fspnet.data import read_dataset, write_dataset
from fspnet.errors import DataError
from fspnet.predict import load_run, main, predict
from fspnet.train import train

from .conftest import PARAM_NAMES, make_dataset


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory, base_overrides, decoder_run):
    run_dir = tmp_path_factory.mktemp("runs") / "encoder"
    overrides = {**base_overrides, "stage": "encoder", "run_dir": str(run_dir), "encoder.decoder_run": str(decoder_run)}
    train(load_config(None, {**overrides, "training.epochs": 6}))
    return run_dir


def test_prediction_csv(encoder_run, dataset_path, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["--run", str(encoder_run), "--data", str(dataset_path), "--out", str(out)]) == 0
    assert "wrote 400 predictions of nh, gamma, fsc, kt_max, norm" in capsys.readouterr().out
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["name", *PARAM_NAMES]
    assert len(rows) == 401 and rows[1][0] == "spec0000"
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.all(np.isfinite(values))
    assert np.all(values[:, [0, 2, 3, 4]] > 0)  # log-scaled parameters come back positive
    # physical units: the predictions land within the training ranges' orders of magnitude
    truth = read_dataset(dataset_path).params
    assert 1e-3 < np.median(values[:, 0]) < 1e2 and 1 < np.median(values[:, 1]) < 5
    assert abs(np.log10(np.median(values[:, 4])) - np.log10(np.median(truth[:, 4]))) < 3


def test_rows_without_names_are_indexed(encoder_run, tmp_path):
    ds = make_dataset(7, seed=3)
    ds.names = None
    write_dataset(tmp_path / "nonames.h5", ds)
    main(["--run", str(encoder_run), "--data", str(tmp_path / "nonames.h5"), "--out", str(tmp_path / "p.csv")])
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(7)]


def test_load_run_and_predict_function(encoder_run, decoder_run):
    run = load_run(encoder_run)
    assert run.stage == "encoder" and run.decoder is not None and run.param_names == PARAM_NAMES
    spectra = make_dataset(5, seed=9).spectra
    params = predict(run, spectra)
    assert params.shape == (5, 5)
    with pytest.raises(DataError, match=r"a decoder run cannot predict parameters; use an encoder run"):
        predict(load_run(decoder_run), spectra)
    with pytest.raises(DataError, match=r"spectra have shape \(5, 10\), but .* expects \[N, 240\]"):
        predict(run, spectra[:, :10])


def test_bad_run_dir(tmp_path, dataset_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--run", str(tmp_path), "--data", str(dataset_path), "--out", str(tmp_path / "p.csv")])
    assert info.value.code == 2
    assert "not a run directory; run.json is missing" in capsys.readouterr().err


def _with_nan_rows(tmp_path, rows=(1, 4)):
    """A dataset file whose ``rows`` are all-NaN spectra (written as a user's tool might, past the checks)."""
    import h5py

    path = tmp_path / "nan.h5"
    write_dataset(path, make_dataset(6, seed=5, with_params=False))
    with h5py.File(path, "r+") as f:
        spectra = f["spectra"][()]
        spectra[list(rows)] = np.nan
        f["spectra"][...] = spectra
    return path


def test_pretrained_refuses_nan_rows_naming_file_and_rows(tmp_path, capsys):
    path = _with_nan_rows(tmp_path)
    out = tmp_path / "p.csv"
    with pytest.raises(SystemExit) as info:
        main(["--pretrained", "--data", str(path), "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}: non-finite values (NaN or inf) in spectra rows 1, 4 (2 of 6 rows)" in err
    assert "--skip-nonfinite" in err and not out.exists()


def test_pretrained_skip_nonfinite_writes_nan_and_flags(tmp_path, capsys):
    path = _with_nan_rows(tmp_path)
    out = tmp_path / "p.csv"
    assert main(["--pretrained", "--data", str(path), "--out", str(out), "--skip-nonfinite"]) == 0
    assert "(2 rows with NaN/inf written as nan, flagged in 'nonfinite')" in capsys.readouterr().out
    rows = list(csv.reader(out.open()))
    assert rows[0][0] == "name" and rows[0][-1] == "nonfinite" and len(rows) == 7
    flags = [r[-1] for r in rows[1:]]
    values = np.array([[float(v) for v in r[1:-1]] for r in rows[1:]])
    assert flags == ["0", "1", "0", "0", "1", "0"]
    assert np.isnan(values[[1, 4]]).all()  # no confident prediction for a spectrum that is not there
    assert np.isfinite(values[[0, 2, 3, 5]]).all()


def test_predict_function_refuses_or_skips_nonfinite(encoder_run):
    run = load_run(encoder_run)
    spectra = make_dataset(5, seed=9).spectra.astype(np.float64)
    spectra[3, 7] = np.inf
    with pytest.raises(DataError, match=r"spectra: non-finite values \(NaN or inf\) in spectra row 3 \(1 of 5 rows\)"):
        predict(run, spectra)
    params = predict(run, spectra, skip_nonfinite=True)
    assert np.isnan(params[3]).all() and np.isfinite(params[[0, 1, 2, 4]]).all()
    np.testing.assert_allclose(params[[0, 1, 2, 4]], predict(run, spectra[[0, 1, 2, 4]]), rtol=1e-6)
