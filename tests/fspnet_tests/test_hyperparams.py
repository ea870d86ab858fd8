"""``fspnet.train --hyperparams best_params.json`` trains the best trial's whole config.

A quickstart-like FSP-Net decoder study (fixed ``config:`` section: no GRU, one residual layer,
its own data and epochs) runs three real trials; the command line then retrains the best one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from fspnet.data import write_dataset
from fspnet.errors import ConfigError
from fspnet.rundir import CONFIG, NETWORK, hyperparams_config, read_hyperparams
from fspnet.train import main as train_main
from tests.fspnet_tests.conftest import make_dataset

ROOT = Path(__file__).resolve().parents[2]
#: What may differ between the trial's config.json and the retrained one.
RUN_ONLY = ("run_dir", "resume", "overwrite")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished 3-trial decoder study and its ``best_params.json``."""
    import optuna

    from hpo.report import report
    from hpo.run import run_study
    from hpo.study import load_study_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = tmp_path_factory.mktemp("tiny_fspnet_study")
    data = tmp / "tiny.h5"
    write_dataset(data, make_dataset(200, seed=3))
    study = {
        "name": "tiny_fspnet",
        "output_dir": str(tmp / "outputs"),
        "direction": "minimize",
        "metric": "val_loss",
        "seed": 0,
        "n_trials": 3,
        "sampler": {"name": "RandomSampler", "configs": {"seed": 0}},
        "pruner": {"name": "NopPruner"},
        "trainable": "fspnet",
        "config_file": str(ROOT / "configs" / "fspnet.yaml"),
        "config": {
            "stage": "decoder",
            "data": {"path": str(data), "val_fraction": 0.25},
            "training": {"epochs": 2, "patience": None, "batch_size": 50, "device": "cpu", "plots": False},
            "decoder": {"architecture": {"gru": False, "residual_layers": 1}},
        },
        "tune_params": {
            "learning_rate": {"state": True, "suggest": "float", "kwargs": {"low": 1e-4, "high": 3e-3, "log": True},
                              "path": "training.learning_rate"},
            "width": {"state": True, "suggest": "cat", "kwargs": {"choices": [16, 24, 32]}, "path": "decoder.architecture.width"},
            "dense_layers": {"state": True, "suggest": "int", "kwargs": {"low": 1, "high": 2}, "path": "decoder.architecture.dense_layers"},
        },
        "collate_results": False,
    }  # fmt: skip
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    run_study(path, progress=False)
    cfg = load_study_config(path)
    report(cfg)
    return {"tmp": tmp, "best": cfg.study_dir / "best_params.json", "trials": cfg.study_dir / "trials"}


def _without(config: dict, keys: tuple[str, ...]) -> dict:
    out = json.loads(json.dumps(config))
    for key in keys:
        out.pop(key, None)
    out["training"].pop("progress", None)
    return out


def test_best_params_carry_the_trial_config(tiny_study):
    best = json.loads(tiny_study["best"].read_text())
    trial_dir = tiny_study["trials"] / str(best["trial"])
    used = json.loads((trial_dir / CONFIG).read_text())  # what the trainer resolved and trained
    assert best["config_source"] == str(trial_dir / "trial.json")
    assert _without(best["config"], RUN_ONLY) == _without(used, RUN_ONLY)
    assert best["config"]["decoder"]["architecture"]["gru"] is False
    assert best["seed"] == used["training"]["seed"]
    # the tuned values sit in that config at their paths
    assert read_hyperparams(tiny_study["best"]) == {best["paths"][k]: v for k, v in best["params"].items()}
    assert best["config"]["training"]["learning_rate"] == best["params"]["learning_rate"]


def test_train_hyperparams_reproduces_the_best_trial(tiny_study, capsys):
    best = json.loads(tiny_study["best"].read_text())
    trial_dir = tiny_study["trials"] / str(best["trial"])
    run_dir = tiny_study["tmp"] / "final"
    assert train_main(["--hyperparams", str(tiny_study["best"]), "--run-dir", str(run_dir), "--log-level", "WARNING"]) == 0
    assert "decoder: 2 epochs" in capsys.readouterr().out
    # the same network, the same resolved config (seed included): only the run directory differs
    assert json.loads((run_dir / NETWORK).read_text()) == json.loads((trial_dir / NETWORK).read_text())
    trial_cfg, final_cfg = (json.loads((d / CONFIG).read_text()) for d in (trial_dir, run_dir))
    assert final_cfg["run_dir"] == str(run_dir)
    assert _without(final_cfg, RUN_ONLY) == _without(trial_cfg, RUN_ONLY)
    trial_metrics, final_metrics = (json.loads((d / "metrics.json").read_text()) for d in (trial_dir, run_dir))
    losses = [[(h["train_loss"], h["val_loss"]) for h in m["history"]] for m in (trial_metrics, final_metrics)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)  # same seed, same data: the same training


def test_contradicting_set_is_refused_naming_the_key(tiny_study):
    best = json.loads(tiny_study["best"].read_text())
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--hyperparams", str(tiny_study["best"]), "--run-dir", str(tiny_study["tmp"] / "refused"),
                    "--set", "decoder.architecture.gru=true", "--set", "training.epochs=2"])  # fmt: skip
    assert exit_info.value.code == 2
    assert not (tiny_study["tmp"] / "refused").exists()
    with pytest.raises(
        ConfigError,
        match=r"1 key\(s\) contradict the trial's config:\n  decoder\.architecture\.gru: "
        r"the command line gives True, the trial trained with False\n.*--override",
    ):
        hyperparams_config(tiny_study["best"], None, {"decoder.architecture.gru": True, "training.epochs": 2})
    # a value equal to the trial's is no contradiction
    cfg = hyperparams_config(tiny_study["best"], None, {"training.learning_rate": best["params"]["learning_rate"]})
    assert cfg["decoder"]["architecture"]["gru"] is False


def test_readme_config_file_is_refused_naming_each_key(tiny_study):
    with pytest.raises(ConfigError) as e:
        hyperparams_config(tiny_study["best"], ROOT / "configs" / "fspnet.yaml")
    text = str(e.value)
    for key in ("data.path", "training.epochs", "data.val_fraction"):
        assert f"\n  {key}: {ROOT / 'configs' / 'fspnet.yaml'} gives" in text
    assert "decoder.architecture" not in text  # `architecture: {}` in the file sets nothing


def test_override_applies_and_logs_each_key(tiny_study, caplog):
    best = json.loads(tiny_study["best"].read_text())
    with caplog.at_level(logging.WARNING, logger="fspnet.rundir"):
        cfg = hyperparams_config(tiny_study["best"], None, {"training.epochs": 5, "training.seed": 7, "run_dir": "x"},
                                 override=True)  # fmt: skip
    assert cfg["training"]["epochs"] == 5 and cfg["training"]["seed"] == 7 and cfg["run_dir"] == "x"
    assert cfg["decoder"]["architecture"] == best["config"]["decoder"]["architecture"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("overriding training.epochs: the trial's 2 -> 5" in m for m in messages), messages
    assert any("overriding training.seed" in m for m in messages), messages
    assert not any("run_dir" in m for m in messages)  # where to write is not part of the trial


def test_tuned_values_only_file_warns(tmp_path, caplog):
    legacy = tmp_path / "best_params.json"
    legacy.write_text(json.dumps({"trial": 4, "params": {"lr": 1e-3}, "paths": {"lr": "training.learning_rate"}}))
    with caplog.at_level(logging.WARNING, logger="fspnet.rundir"):
        cfg = hyperparams_config(legacy, None, {"training.epochs": 3})
    assert cfg["training"]["learning_rate"] == 1e-3 and cfg["training"]["epochs"] == 3
    assert "holds the tuned values only, not the whole config of trial 4" in caplog.text


def test_other_trainable_is_refused(tmp_path):
    path = tmp_path / "best_params.json"
    path.write_text(json.dumps({"trial": 0, "params": {}, "paths": {}, "trainable": "mlp", "config": {"epochs": 3}}))
    with pytest.raises(ConfigError, match=r"best_params\.json: 'config' is the config of trainable 'mlp', not an fspnet"):
        hyperparams_config(path)


def test_trials_recorded_without_config_get_it_recomputed(tiny_study):
    from hpo.collate import best_params
    from hpo.study import load_study_config, open_study

    cfg = load_study_config(tiny_study["tmp"] / "study.yaml")
    study = open_study(cfg)
    kept = best_params(cfg, study)
    record = cfg.trial_dir(kept["trial"]) / "trial.json"
    original = record.read_text()
    try:
        record.write_text(json.dumps({k: v for k, v in json.loads(original).items() if k != "config"}))
        again = best_params(cfg, study)
    finally:
        record.write_text(original)
    assert again["config_source"].startswith(f"recomputed from {cfg.path}")
    assert again["config"] == kept["config"] and again["seed"] == kept["seed"]
