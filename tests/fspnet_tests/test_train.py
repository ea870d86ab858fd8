"""fspnet.train: decoder and encoder training, resume, callback, schedule, data sources, CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading

import pytest
import torch
from safetensors.torch import load_file

from fspnet.config import from_dict, load_config
from fspnet.data import read_dataset_cached, write_dataset
from fspnet.errors import ConfigError, DataError, TrainingError
from fspnet.rundir import load_run, write_ensemble
from fspnet.train import _ensure_dataset, main, read_hyperparams, train

from .conftest import make_dataset

ARTIFACTS = [
    "config.json", "run.json", "network.json", "transforms.json", "splits.json", "best.safetensors",
    "last.pt", "metrics.csv", "metrics.json", "provenance.json", "loss_curve.png", "reconstruction.png",
]  # fmt: skip


def _config(base, tmp_path, name="run", **overrides):
    return load_config(None, {**base, "run_dir": str(tmp_path / name), **overrides})


def test_decoder_training_lowers_the_loss_and_writes_artifacts(decoder_run):
    for name in ARTIFACTS:
        assert (decoder_run / name).is_file(), name
    history = json.loads((decoder_run / "metrics.json").read_text())["history"]
    assert len(history) == 8
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"]
    header = (decoder_run / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,stage,train_loss,val_loss,lr")
    ckpt = torch.load(decoder_run / "last.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 8 and set(ckpt["rng"]) == {"torch", "cuda", "shuffle"}
    prov = json.loads((decoder_run / "provenance.json").read_text())
    assert prov["seed"] == 0 and prov["device"] == "cpu" and "torch" in prov["packages"]
    transforms = json.loads((decoder_run / "transforms.json").read_text())
    assert transforms["params"]["log_params"] == [0, 2, 3, 4]
    assert transforms["param_names"] == ["nh", "gamma", "fsc", "kt_max", "norm"]


def test_encoder_trains_through_the_frozen_decoder(decoder_run, base_overrides, tmp_path):
    cfg = _config(
        base_overrides,
        tmp_path,
        stage="encoder",
        **{"encoder.decoder_run": str(decoder_run), "training.epochs": 6, "training.plots": True},
    )
    result = train(cfg)
    run = tmp_path / "run"
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert result["stopped"] == "max_epochs" and result["epochs"] == 6
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert {"val_recon_loss", "val_latent_loss"} <= set(result["metrics"])
    assert (run / "reconstruction.png").is_file() and (run / "loss_curve.png").is_file()
    # the decoder was not trained: the copy in the encoder run equals the decoder's best weights
    frozen, original = load_file(str(run / "decoder.safetensors")), load_file(str(decoder_run / "best.safetensors"))
    assert frozen.keys() == original.keys()
    assert all(torch.equal(frozen[k], original[k]) for k in frozen)
    assert json.loads((run / "transforms.json").read_text()) == json.loads((decoder_run / "transforms.json").read_text())
    loss = result["metrics"]
    assert loss["val_loss"] == pytest.approx(loss["val_recon_loss"] + 0.01 * loss["val_latent_loss"], rel=1e-5)


def test_encoder_data_must_fit_the_decoder(base_overrides, tmp_path, decoder_run):
    with pytest.raises(DataError, match=r"not a run directory; run.json is missing"):
        train(_config(base_overrides, tmp_path, stage="encoder", **{"encoder.decoder_run": str(tmp_path)}))
    write_dataset(tmp_path / "short.h5", make_dataset(20, n_bins=100))
    encoder = {"encoder.decoder_run": str(decoder_run), "data.path": str(tmp_path / "short.h5")}
    with pytest.raises(DataError, match=r"short\.h5: spectra have 100 bins, but the decoder in .* makes 240"):
        train(_config(base_overrides, tmp_path, stage="encoder", **encoder))
    with pytest.raises(ConfigError, match=r"encoder\.decoder_run: .* is not a decoder run \(its run.json says stage 'encoder'\)"):
        train(
            _config(
                base_overrides,
                tmp_path,
                "x",
                stage="encoder",
                **{"encoder.decoder_run": str(_encoder(base_overrides, tmp_path, decoder_run))},
            )
        )
    ensemble = tmp_path / "ensemble"  # an ensemble of decoders has no one network to copy into the run
    shutil.copytree(decoder_run, ensemble)
    write_ensemble(ensemble, decoder_run, [decoder_run])
    with pytest.raises(
        ConfigError, match=r"encoder\.decoder_run: .*ensemble is an ensemble \(ensemble\.json\); train the encoder"
    ):
        train(_config(base_overrides, tmp_path, "y", stage="encoder", **{"encoder.decoder_run": str(ensemble)}))


def _encoder(base, tmp_path, decoder_run):
    train(_config(base, tmp_path, "enc", stage="encoder", **{"encoder.decoder_run": str(decoder_run), "training.epochs": 1}))
    return tmp_path / "enc"


def test_encoder_on_spectra_without_params(base_overrides, tmp_path, decoder_run):
    write_dataset(tmp_path / "real.h5", make_dataset(40, with_params=False))
    result = train(
        _config(
            base_overrides,
            tmp_path,
            stage="encoder",
            **{"encoder.decoder_run": str(decoder_run), "data.path": str(tmp_path / "real.h5"), "training.epochs": 2},
        )
    )
    assert "val_latent_loss" not in result["metrics"] and result["metrics"]["val_recon_loss"] > 0


def test_resume_continues_exactly(base_overrides, tmp_path):
    full = train(_config(base_overrides, tmp_path, "full", **{"training.epochs": 6}))
    train(_config(base_overrides, tmp_path, "split", **{"training.epochs": 3}))
    resumed = train(_config(base_overrides, tmp_path, "split", resume=True, **{"training.epochs": 6}))
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    b = json.loads((tmp_path / "split" / "metrics.json").read_text())["history"]
    assert [h["train_loss"] for h in a] == [h["train_loss"] for h in b]
    assert [h["val_loss"] for h in a] == [h["val_loss"] for h in b]
    assert resumed["epochs"] == full["epochs"] == 6
    wa, wb = load_file(str(tmp_path / "full" / "best.safetensors")), load_file(str(tmp_path / "split" / "best.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    prov = json.loads((tmp_path / "split" / "provenance.json").read_text())
    assert prov["resumed_at_epoch"] == 3 and len(prov["previous"]) == 1


def test_resume_without_checkpoint_starts_fresh(base_overrides, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fspnet.train"):
        result = train(_config(base_overrides, tmp_path, resume=True, **{"training.epochs": 1}))
    assert result["epochs"] == 1
    assert "no last.pt to resume from; starting a new run" in caplog.text


def test_callback_stops_and_checkpoints(base_overrides, tmp_path):
    seen = []

    def callback(epoch, metrics):
        seen.append((epoch, set(metrics)))
        if epoch == 1:
            return ["checkpoint"]
        return {"stop"} if epoch == 2 else None

    result = train(_config(base_overrides, tmp_path, **{"training.epochs": 10, "training.checkpoint_every": 0}), callback)
    assert result["stopped"] == "callback" and result["epochs"] == 2
    assert 0 < result["metrics"]["inference_cost"] < 100  # forward time over FSP-Net's default decoder's
    assert [e for e, _ in seen] == [1, 2]
    assert {"train_loss", "val_loss", "lr", "epoch", "best_val_loss"} <= seen[0][1]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state"]["epoch"] == 2


def test_early_stopping_and_stages(base_overrides, tmp_path):
    # a gradient clipped to ~0 leaves the weights (and the validation loss) unchanged, so every
    # epoch after the first fails to improve
    frozen = {"training.grad_clip": 1e-30, "training.patience": 2, "training.epochs": 20}
    result = train(_config(base_overrides, tmp_path, "one", **frozen))
    assert result["stopped"] == "early_stopping" and result["epochs"] == 3 and result["best_epoch"] == 1
    staged = {**frozen, "training.stages": [{"epochs": 2, "patience": None}]}
    result = train(_config(base_overrides, tmp_path, "two", **staged))
    history = json.loads((tmp_path / "two" / "metrics.json").read_text())["history"]
    assert result["stopped"] == "max_epochs" and result["epochs"] == 5
    assert [h["stage"] for h in history] == [0, 0, 0, 1, 1]
    assert history[-1]["lr"] == pytest.approx(3e-4)


def test_cosine_schedule_anneals_each_stage_and_resumes_exactly(base_overrides, tmp_path):
    import math

    cosine = {
        "training.lr_schedule": "cosine",
        "training.learning_rate": 1e-3,
        "training.min_lr": 1e-5,
        "training.patience": None,
    }
    staged = {**cosine, "training.epochs": 4, "training.stages": [{"epochs": 2, "patience": None}]}
    train(_config(base_overrides, tmp_path, "full", **staged))
    history = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    # the rate the next epoch trains at: down a half cosine to min_lr, then again from a tenth
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3, 4)]
    expected += [1e-5 + (1e-4 - 1e-5) * (1 + math.cos(math.pi * e / 2)) / 2 for e in (1, 2)]
    assert [h["lr"] for h in history] == pytest.approx(expected)
    # stopped after epoch 2, then resumed: the scheduler continues where it was
    train(_config(base_overrides, tmp_path, "split", **staged), lambda epoch, metrics: {"stop"} if epoch == 2 else None)
    train(_config(base_overrides, tmp_path, "split", resume=True, **staged))
    resumed = json.loads((tmp_path / "split" / "metrics.json").read_text())["history"]
    assert [h["lr"] for h in resumed] == [h["lr"] for h in history]
    assert [h["val_loss"] for h in resumed] == [h["val_loss"] for h in history]
    with pytest.raises(ConfigError, match="lr_schedule"):
        load_config(None, {**base_overrides, "training.lr_schedule": "linear"})


def test_non_finite_loss_stops_at_the_first_bad_batch_with_an_error(base_overrides, tmp_path, capsys):
    exploding = {"training.learning_rate": 1e30, "training.epochs": 10}
    with pytest.raises(TrainingError, match=r"run: epoch 1, batch \d+ of 12: the training loss is (inf|nan); training stopped"):
        train(_config(base_overrides, tmp_path, **exploding))
    assert not (tmp_path / "run" / "best.safetensors").exists()  # no weights from a diverged epoch
    sets = [f"--set={k}={v}" for k, v in {**base_overrides, **exploding}.items()]
    with pytest.raises(SystemExit) as info:
        main(["--run-dir", str(tmp_path / "cli"), *sets])
    assert info.value.code == 1
    assert "epoch 1, batch" in capsys.readouterr().err


def test_non_finite_validation_loss_stops_with_an_error(base_overrides, tmp_path):
    from fspnet.data import make_split

    ds = make_dataset(100)
    val_row = int(make_split(100, 0.1, 0).val[0])
    ds.params[val_row, 1] = 1e39  # finite, but beyond float32 once scaled: the network gives inf/NaN
    write_dataset(tmp_path / "d.h5", ds)
    with pytest.raises(TrainingError, match=r"run: epoch 1: the validation loss is not finite \(val_loss = (nan|inf)\)"):
        train(_config(base_overrides, tmp_path, **{"data.path": str(tmp_path / "d.h5")}))


class _SetAtPoll(threading.Event):
    """An event that sets itself at its n-th ``is_set()``: a signal arriving at a known batch."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.polls = n, 0

    def is_set(self) -> bool:
        self.polls += 1
        if self.polls >= self.n:
            self.set()
        return super().is_set()


def _history(run_dir):
    return [{k: v for k, v in h.items() if k != "time_s"} for h in json.loads((run_dir / "metrics.json").read_text())["history"]]


def test_interrupt_mid_epoch_then_resume_equals_an_uninterrupted_run(base_overrides, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = {"training.epochs": 3, "training.stages": [{"epochs": 1, "patience": None}]}
        full = train(_config(base_overrides, tmp_path, "full", **cfg))
        # 12 batches an epoch: the trainer checks before each epoch and after every batch but the
        # last, so poll 12 + 1 + 6 comes right after batch 6 of epoch 2
        event = _SetAtPoll(12 + 1 + 6)
        cut = train(_config(base_overrides, tmp_path, "cut", **cfg), interrupt=event)
        assert cut["stopped"] == "interrupted" and cut["epochs"] == 1
        ckpt = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
        assert ckpt["state"]["epoch"] == 1 and ckpt["partial"]["batch"] == 6 and len(ckpt["partial"]["starts"]) == 12
        resumed = train(_config(base_overrides, tmp_path, "cut", resume=True, **cfg))
    finally:
        torch.set_num_threads(threads)
    assert resumed["stopped"] == full["stopped"] and resumed["epochs"] == full["epochs"] == 4
    assert _history(tmp_path / "cut") == _history(tmp_path / "full")  # bitwise: every loss, lr and stage
    wa, wb = load_file(str(tmp_path / "full" / "best.safetensors")), load_file(str(tmp_path / "cut" / "best.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_interrupt_between_epochs_checkpoints_at_once(base_overrides, tmp_path):
    event = threading.Event()
    result = train(
        _config(base_overrides, tmp_path, **{"training.epochs": 5}), lambda e, m: event.set() if e == 2 else None, interrupt=event
    )
    assert result["stopped"] == "interrupted" and result["epochs"] == 2
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 2 and ckpt["partial"] is None
    assert train(_config(base_overrides, tmp_path, resume=True, **{"training.epochs": 5}))["epochs"] == 5


def _files(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def test_a_failed_run_leaves_a_good_run_directory_as_it_was(base_overrides, tmp_path, capsys):
    good = _config(base_overrides, tmp_path, **{"training.epochs": 1})
    train(good)
    before = _files(tmp_path / "run")
    with pytest.raises(
        ConfigError,
        match=r"run_dir: .*run holds the results of an earlier run \(best\.safetensors, last\.pt, "
        r"metrics\.json, metrics\.csv\); resume it .* or replace it \(--overwrite",
    ):
        train(good)
    bad_net = tmp_path / "bad.json"
    bad_net.write_text(json.dumps({"layers": [{"type": "linear", "features": 7}]}))
    with pytest.raises(ConfigError):  # the network is built before anything is written
        train(_config(base_overrides, tmp_path, overwrite=True, **{"decoder.network": str(bad_net), "data.val_fraction": 0.3}))
    assert _files(tmp_path / "run") == before and not (tmp_path / "run" / "previous").exists()
    sets = [f"--set={k}={v}" for k, v in base_overrides.items()]
    with pytest.raises(SystemExit) as info:
        main(["--run-dir", str(tmp_path / "run"), *sets])
    assert info.value.code == 2 and "holds the results of an earlier run" in capsys.readouterr().err
    # an explicit overwrite moves the old files aside once the new run has started
    assert main(["--run-dir", str(tmp_path / "run"), "--overwrite", "--set=training.seed=3", *sets]) == 0
    (previous,) = (tmp_path / "run" / "previous").iterdir()
    assert _files(previous) == before
    assert load_run(tmp_path / "run").config["training"]["seed"] == 3


def test_load_run_refuses_a_directory_mixing_two_runs(base_overrides, tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        train(_config(base_overrides, tmp_path, name, **{"training.epochs": 1, "training.seed": seed}))
    a, b = tmp_path / "a", tmp_path / "b"
    assert load_run(a).stage == "decoder"
    original = (a / "transforms.json").read_bytes()
    (a / "transforms.json").write_bytes((b / "transforms.json").read_bytes())
    with pytest.raises(DataError, match=r"a/transforms\.json: does not belong to run [0-9a-f]{32} of .*a/run\.json"):
        load_run(a)
    (a / "transforms.json").write_bytes(original)
    (a / "best.safetensors").write_bytes((b / "best.safetensors").read_bytes())
    with pytest.raises(
        DataError, match=r"a/best\.safetensors: written by run [0-9a-f]{32}, but .*a/run\.json is run [0-9a-f]{32}"
    ):
        load_run(a)
    with pytest.raises(DataError, match=r"best\.safetensors: written by run"):  # resuming it is refused too
        train(_config(base_overrides, tmp_path, "a", resume=True, **{"training.epochs": 2}))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_corrupt_or_malicious_checkpoint_gives_a_clear_error(base_overrides, tmp_path, capsys):
    cfg = _config(base_overrides, tmp_path, resume=True, **{"training.epochs": 2})
    train({**cfg, "training": {**cfg["training"], "epochs": 1}})
    ckpt = tmp_path / "run" / "last.pt"
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"run/last\.pt: cannot read the checkpoint; it is truncated or corrupt") as info:
        train(cfg)
    assert "weights_only" not in str(info.value)
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(marker)}, ckpt)
    with pytest.raises(
        DataError, match=r"run/last\.pt: refused to load: the checkpoint holds objects other than tensors"
    ) as info:
        train(cfg)
    assert "weights_only" not in str(info.value) and "system" in str(info.value) and not marker.exists()
    sets = [f"--set={k}={v}" for k, v in base_overrides.items()]
    with pytest.raises(SystemExit) as exit_info:
        main(["--run-dir", str(tmp_path / "run"), "--resume", *sets])
    assert exit_info.value.code == 2 and "last.pt: refused to load" in capsys.readouterr().err
    torch.save({"state": {}}, ckpt)
    with pytest.raises(DataError, match=r"last\.pt: not a checkpoint of this trainer \(missing model, optimizer"):
        train(cfg)


def test_subset_and_dataset_cache(base_overrides, tmp_path, dataset_path):
    train(_config(base_overrides, tmp_path, **{"training.epochs": 1, "data.subset": {"n": 50, "mode": "random"}}))
    split = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert len(split["train"]) == 45 and len(split["val"]) == 5 and split["n_total"] == 400
    assert read_dataset_cached(dataset_path) is read_dataset_cached(dataset_path)


def test_bad_inputs(base_overrides, tmp_path):
    with pytest.raises(ConfigError, match=r"training\.epochz: unknown key"):
        train({"training": {"epochz": 3}})
    with pytest.raises(DataError, match=r"missing\.h5: dataset file not found; set data\.generate"):
        train(_config(base_overrides, tmp_path, **{"data.path": str(tmp_path / "missing.h5")}))
    with pytest.raises(
        ConfigError, match=r"decoder\.architecture: decoder_config: unknown knob\(s\) 'no_such_knob'; valid knobs: n_bins=240"
    ):
        train(_config(base_overrides, tmp_path, **{"decoder.network": None, "decoder.architecture": {"no_such_knob": 1}}))
    no_params = tmp_path / "noparams.h5"
    write_dataset(no_params, make_dataset(20, with_params=False))
    with pytest.raises(DataError, match=r"the decoder stage needs 'params'"):
        train(_config(base_overrides, tmp_path, **{"data.path": str(no_params)}))
    bad_net = tmp_path / "bad.json"
    bad_net.write_text(json.dumps({"layers": [{"type": "linear", "features": 7}]}))
    shape = r"decoder\.network .*maps \(5,\) to \(7,\), but this stage needs \(240,\)|bad\.json: .*\[7\].*\[240\]"
    with pytest.raises(ConfigError, match=shape):
        train(_config(base_overrides, tmp_path, **{"decoder.network": str(bad_net)}))


@pytest.mark.slow
def test_generate_once_under_concurrency(tmp_path, caplog):
    path = tmp_path / "gen" / "synthetic.h5"
    cfg = from_dict({"data": {"path": str(path), "generate": {"n": 16, "seed": 1}}, "training": {"progress": False}})
    results, errors = [], []

    def worker():
        try:
            results.append(_ensure_dataset(cfg))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="fspnet.train"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and results == [path] * 3
    assert caplog.text.count("making 16 spectra with fspnet.synthesize") == 1
    ds = read_dataset_cached(path)
    assert ds.spectra.shape[0] == 16 and ds.params is not None
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_provenance_names_slurm_ids_and_versions(monkeypatch):
    from runtools.provenance import collect_provenance

    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    prov = collect_provenance(seed=7, device="cpu", extra={"trial": 2})
    assert prov["slurm"] == {"SLURM_JOB_ID": "123", "SLURM_ARRAY_TASK_ID": "4"}
    assert prov["seed"] == 7 and prov["trial"] == 2
    assert prov["packages"]["torch"] is not None and prov["python"].startswith("3.")
    assert set(prov["git"]) == {"commit", "dirty"} and "cuda_available" in prov["gpu"]


def test_cli_and_hyperparams(base_overrides, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"training": {"epochs": 1}}))
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"params": {"lr": 1e-3}, "paths": {"lr": "training.learning_rate"}}))
    sets = [
        f"--set={k}={json.dumps(v) if not isinstance(v, str) else v}"
        for k, v in base_overrides.items()
        if k not in ("training.epochs", "training.learning_rate")
    ]
    run_dir = tmp_path / "cli"
    assert main(["--config", str(config), "--stage", "decoder", "--run-dir", str(run_dir), "--hyperparams", str(hp), *sets]) == 0
    assert "decoder: 1 epochs (max_epochs)" in capsys.readouterr().out
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["training"]["learning_rate"] == 1e-3 and saved["training"]["epochs"] == 1
    assert main(["--config", str(config), "--run-dir", str(run_dir), "--resume", "--set", "training.epochs=2", *sets]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["history"][-1]["epoch"] == 2
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "--set", "training.epoch=2"])
    assert info.value.code == 2
    assert "training.epoch: unknown key" in capsys.readouterr().err


def test_read_hyperparams(tmp_path, caplog):
    p = tmp_path / "hp.json"
    p.write_text(json.dumps({"training.learning_rate": 1e-3}))
    assert read_hyperparams(p) == {"training.learning_rate": 1e-3}
    p.write_text(json.dumps({"params": {"lr": 1e-3, "w": 3}, "paths": {"lr": "training.learning_rate"}, "value": 0.1}))
    with caplog.at_level(logging.WARNING, logger="fspnet.rundir"):
        assert read_hyperparams(p) == {"training.learning_rate": 1e-3}
    assert "params ['w'] have no config path in 'paths'; ignoring them" in caplog.text
    with pytest.raises(ConfigError, match=r"hyperparameter file not found"):
        read_hyperparams(tmp_path / "none.json")
    p.write_text("[1]")
    with pytest.raises(ConfigError, match=r"expected a mapping of dotted config paths"):
        read_hyperparams(p)
