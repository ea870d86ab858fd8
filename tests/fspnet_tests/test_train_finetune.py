"""fspnet.train: the last stage that fine-tunes on the N worst-reconstructed training spectra."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from fspnet.config import load_config
from fspnet.data import load_split, read_dataset_cached
from fspnet.errors import ConfigError
from fspnet.rundir import load_run
from fspnet.train import _tensors, select_worst, train

from .test_train import _config, _history, _SetAtPoll

# 360 training spectra in batches of 32 (12 batches); the fine-tuning set of 40 is 2 batches
FINE = {"training.epochs": 2, "training.fine_tune_worst": 40, "training.fine_tune_epochs": 2}


def test_select_worst_is_the_largest_losses_in_a_stable_order():
    loss = torch.tensor([0.1, 0.5, 0.3, 0.5, 0.0])
    assert select_worst(loss, 3).tolist() == [1, 3, 2]
    assert select_worst(loss, 99).tolist() == [1, 3, 2, 0, 4]
    assert select_worst(loss, 0).tolist() == []


def test_fine_tuning_is_the_last_stage_and_metrics_continue_through_it(base_overrides, tmp_path):
    cfg = {**FINE, "training.stages": [{"epochs": 1, "patience": None}]}
    result = train(_config(base_overrides, tmp_path, "ft", **cfg))
    history = json.loads((tmp_path / "ft" / "metrics.json").read_text())["history"]
    assert result["epochs"] == 5 and result["stopped"] == "max_epochs"
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["stage"] for h in history] == [0, 0, 1, 2, 2]
    assert history[-1]["lr"] == pytest.approx(3e-3 / 100)  # a tenth of the last stage's rate
    worst = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)["worst"]
    assert worst.dtype == torch.int64 and len(worst) == 40 and len(set(worst.tolist())) == 40
    # the worst spectra are harder than the average one: their training loss is above the
    # epoch before's mean over every training spectrum
    assert history[3]["train_loss"] > history[2]["train_loss"]


def test_the_worst_rows_are_those_of_the_best_weights_before_the_stage(base_overrides, tmp_path):
    train(_config(base_overrides, tmp_path, "plain", **{"training.epochs": 2}))
    train(_config(base_overrides, tmp_path, "ft", **FINE))
    # the same seed makes the same first stage, so "plain"'s best weights are those it started from
    run = load_run(tmp_path / "plain")
    ds = read_dataset_cached(base_overrides["data.path"])
    x, p = _tensors(ds, load_split(tmp_path / "plain" / "splits.json").train, run.transforms, torch.device("cpu"))
    with torch.no_grad():
        loss = ((run.network(p).flatten(1) - x) ** 2).mean(1)
    expected = select_worst(loss, 40)
    assert torch.load(tmp_path / "ft" / "last.pt", weights_only=True)["worst"].tolist() == expected.tolist()


def test_interrupt_inside_the_fine_tuning_then_resume_equals_an_uninterrupted_run(base_overrides, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = train(_config(base_overrides, tmp_path, "full", **FINE))
        # polls: before each epoch and after every batch but the last: 12 per full epoch,
        # 2 per fine-tuning epoch; 12 + 12 + 1 + 1 stops after batch 1 of the first fine-tuning epoch
        cut = train(_config(base_overrides, tmp_path, "cut", **FINE), interrupt=_SetAtPoll(12 + 12 + 1 + 1))
        assert cut["stopped"] == "interrupted" and cut["epochs"] == 2
        ckpt = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
        assert ckpt["state"]["stage"] == 1 and ckpt["partial"]["batch"] == 1 and len(ckpt["partial"]["perm"]) == 40
        resumed = train(_config(base_overrides, tmp_path, "cut", resume=True, **FINE))
    finally:
        torch.set_num_threads(threads)
    assert resumed["epochs"] == full["epochs"] == 4
    assert _history(tmp_path / "cut") == _history(tmp_path / "full")  # bitwise, through the stage
    wa, wb = load_file(str(tmp_path / "full" / "best.safetensors")), load_file(str(tmp_path / "cut" / "best.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_encoder_fine_tunes_on_its_worst_spectra(base_overrides, tmp_path, decoder_run):
    result = train(
        _config(
            base_overrides,
            tmp_path,
            "enc",
            stage="encoder",
            **{**FINE, "training.epochs": 1, "training.fine_tune_epochs": 1, "encoder.decoder_run": str(decoder_run)},
        )
    )
    history = json.loads((tmp_path / "enc" / "metrics.json").read_text())["history"]
    assert result["epochs"] == 2 and [h["stage"] for h in history] == [0, 1]
    assert len(torch.load(tmp_path / "enc" / "last.pt", weights_only=True)["worst"]) == 40


def test_fine_tuning_keys_are_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"training\.fine_tune_worst: must be >= 0, but got -1") as info:
        load_config(None, {"training.fine_tune_worst": -1, "training.fine_tune_epochs": "many"})
    assert "training.fine_tune_epochs: expected int, but got str 'many'" in str(info.value)
    # either key at 0 turns the stage off: the schedule is the stages alone
    cfg = load_config(None, {"training.fine_tune_worst": 100})
    assert cfg["training"]["fine_tune_worst"] == 100 and cfg["training"]["fine_tune_epochs"] == 0


def test_stopped_at_the_stage_boundary_then_resumed_equals_an_uninterrupted_run(base_overrides, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(_config(base_overrides, tmp_path, "full", **FINE))
        # stopped after the last epoch of the first stage: the rows are chosen on resuming
        cut = train(_config(base_overrides, tmp_path, "cut", **FINE), lambda e, m: {"stop"} if e == 2 else None)
        assert cut["stopped"] == "callback" and torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["worst"] is None
        train(_config(base_overrides, tmp_path, "cut", resume=True, **FINE))
    finally:
        torch.set_num_threads(threads)
    assert _history(tmp_path / "cut") == _history(tmp_path / "full")
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True)["worst"] for d in ("full", "cut"))
    assert torch.equal(a, b)
