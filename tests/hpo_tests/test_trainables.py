from __future__ import annotations

import json
import os
import threading

import h5py
import numpy as np
import pytest
import torch

from hpo.errors import TrainableError
from hpo.testing import check_storage, check_trainable, linear_regression
from hpo.trainables import MLPTrainable, default_mlp_config, get_trainable, train_mlp
from hpo.trainables._mlp import make_example_data


def test_linear_regression_meets_the_trainable_contract(tmp_path):
    check_trainable("hpo.testing:linear_regression", {"epochs": 6}, tmp_path)


def _mlp_config(tmp_path, **training):
    cfg = default_mlp_config()
    cfg["data"].update(path=str(tmp_path / "data.npz"), generate=300)
    cfg["model"].update(layers=1, width=16)
    cfg["training"].update({"stages": 2, "epochs_per_stage": 2, "batch_size": 64, "plots": False, **training})
    cfg["device"] = "cpu"
    return cfg


@pytest.mark.slow
def test_mlp_meets_the_trainable_contract(tmp_path):
    check_trainable("mlp", _mlp_config(tmp_path, fine_tune_worst=20, fine_tune_epochs=2), tmp_path / "runs", stop_after=3)


def test_mlp_stages_divide_lr_by_ten_and_fine_tune_on_worst_samples(tmp_path):
    seen = []
    cfg = _mlp_config(tmp_path, fine_tune_worst=20, fine_tune_epochs=2, plots=True)
    cfg["run_dir"] = str(tmp_path / "run")
    result = train_mlp(cfg, lambda epoch, m: seen.append((epoch, m["lr"], m["stage"])))
    assert [s[0] for s in seen] == list(range(6)) and result["epochs"] == 6
    assert [s[1] for s in seen] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    assert [s[2] for s in seen] == [0, 0, 1, 1, 2, 2]  # stage 2 = fine-tuning
    for name in (
        "config.json",
        "transforms.json",
        "metrics.csv",
        "best.safetensors",
        "last.pt",
        "loss_curve.png",
        "reconstruction.png",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    assert result["metrics"]["val_loss"] <= result["metrics"]["final_val_loss"]
    from hpo.trainables._mlp import _read_arrays

    hits = _read_arrays.cache_info().hits
    cfg["run_dir"] = str(tmp_path / "run2")
    train_mlp(cfg)
    assert _read_arrays.cache_info().hits == hits + 1  # data are read once per process


class _SetAtPoll(threading.Event):
    """An event that sets itself at its n-th ``is_set()``: a signal arriving at a known batch."""

    def __init__(self, n):
        super().__init__()
        self.n, self.polls = n, 0

    def is_set(self):
        self.polls += 1
        if self.polls >= self.n:
            self.set()
        return super().is_set()


def _mlp_history(run_dir):
    return [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in json.loads((run_dir / "metrics.json").read_text())]


def test_mlp_interrupted_mid_epoch_resumes_exactly(tmp_path):
    cfg = _mlp_config(tmp_path, fine_tune_worst=20, fine_tune_epochs=1)
    full = train_mlp({**cfg, "run_dir": str(tmp_path / "full")})
    # 4 batches an epoch, checked before each epoch and after each batch but the last:
    # poll 4 + 1 + 2 comes after batch 2 of epoch 1
    cut = MLPTrainable().train({**cfg, "run_dir": str(tmp_path / "cut")}, None, _SetAtPoll(4 + 1 + 2))
    assert cut["stopped"] == "interrupted" and cut["epochs"] == 1
    ckpt = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["partial"]["start"] == 128
    resumed = train_mlp({**cfg, "run_dir": str(tmp_path / "cut"), "resume": True})
    assert resumed["epochs"] == full["epochs"] == 5
    assert _mlp_history(tmp_path / "cut") == _mlp_history(tmp_path / "full")


def test_mlp_refuses_a_corrupt_or_foreign_checkpoint(tmp_path):
    cfg = {**_mlp_config(tmp_path), "run_dir": str(tmp_path / "run")}
    train_mlp(cfg)
    ckpt = tmp_path / "run" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(TrainableError, match=r"run/last\.pt: cannot read the checkpoint; it is truncated or corrupt"):
        train_mlp({**cfg, "resume": True})
    torch.save({"model": _Evil(tmp_path / "pwned")}, ckpt)
    with pytest.raises(TrainableError, match=r"run/last\.pt: refused to load") as info:
        train_mlp({**cfg, "resume": True})
    assert "weights_only" not in str(info.value) and not (tmp_path / "pwned").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_function_trainables_get_the_interrupt_when_they_take_it(tmp_path):
    event = threading.Event()
    event.set()
    result = get_trainable("hpo.testing:linear_regression").train({"epochs": 3, "run_dir": str(tmp_path / "lr")}, None, event)
    assert result["stopped"] == "interrupted" and result["epochs"] == 0
    assert get_trainable(lambda config, callback: {"metrics": {"val_loss": 1.0}}).train({}, None, event)["metrics"]


def test_mlp_reads_hdf5_and_reports_bad_keys(tmp_path):
    make_example_data(tmp_path / "d.npz", n=120)
    with np.load(tmp_path / "d.npz") as f, h5py.File(tmp_path / "d.h5", "w") as h:
        h["params"], h["spectra"] = f["x"], f["y"]
    cfg = _mlp_config(tmp_path)
    cfg["data"].update(path=str(tmp_path / "d.h5"), inputs="params", outputs="spectra", generate=None)
    cfg["run_dir"] = str(tmp_path / "run")
    assert np.isfinite(train_mlp(cfg)["metrics"]["val_loss"])
    cfg["data"]["outputs"] = "spectrum"
    with pytest.raises(TrainableError, match=r"d.h5: data.outputs: no array 'spectrum'; the file has params, spectra"):
        train_mlp(cfg)


def test_mlp_config_errors_name_the_key():
    with pytest.raises(TrainableError) as info:
        MLPTrainable().load_config({"model": {"widht": 3, "activation": "swish"}, "optimiser": {}}, None)
    msg = str(info.value)
    assert "optimiser: unknown key" in msg and "model.widht: unknown key; valid keys are layers, width" in msg
    assert "model.activation: unknown 'swish'; choose one of relu" in msg


def test_mlp_config_refuses_bad_numbers():
    # Before the shared schema, lr <= 0 and a negative weight decay passed into training.
    with pytest.raises(TrainableError) as info:
        MLPTrainable().check_config({"optimizer": {"lr": -0.1, "weight_decay": -1}, "model": {"dropout": float("nan")}})
    msg = str(info.value)
    assert "optimizer.lr: must be > 0, but got -0.1" in msg
    assert "optimizer.weight_decay: must be >= 0, but got -1.0" in msg
    assert "model.dropout: must be a finite number, but got nan" in msg


@pytest.mark.slow
def test_fspnet_meets_the_trainable_contract(tmp_path):
    from fspnet.data import SpectrumDataset, write_dataset

    rng = np.random.default_rng(0)
    n, c = 160, 240
    p = rng.uniform(0, 1, (n, 5))
    e = np.linspace(0.3, 10, c)
    spectra = (np.exp(-np.outer(p[:, 0] + 0.5, e) / 5) * (1 + p[:, 1:2])).astype(np.float32)
    write_dataset(tmp_path / "d.h5", SpectrumDataset(spectra, e, np.full(c, 0.04), params=p, param_names=list("abcde")))
    t = get_trainable("fspnet")
    cfg = t.load_config(
        {
            "data": {"path": str(tmp_path / "d.h5"), "generate": None},
            "training": {"epochs": 4, "batch_size": 32, "plots": False, "device": "cpu"},
            "decoder": {"architecture": {"width": 16, "gru": False, "residual_layers": 0}},
        },
        None,
    )
    check_trainable(t, cfg, tmp_path / "runs", stop_after=2)


def test_get_trainable():
    assert get_trainable("mlp").name == "mlp"
    assert get_trainable(linear_regression).train({"epochs": 1, "run_dir": None})["epochs"] == 1
    with pytest.raises(TrainableError, match=r"unknown trainable 'mpl'; choose one of fspnet, mlp or give 'module:function'"):
        get_trainable("mpl")
    with pytest.raises(TrainableError, match=r"module 'hpo.testing' has no attribute 'nope'"):
        get_trainable("hpo.testing:nope")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_storages_meet_the_storage_contract(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 's.log'}"
    check_storage(url, n_threads=3, trials_per_thread=2)
