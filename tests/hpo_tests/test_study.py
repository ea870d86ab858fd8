from __future__ import annotations

import sqlite3

import optuna
import pytest
import yaml

from hpo.errors import HpoError, StudyConfigError
from hpo.study import load_study_config, make_pruner, make_sampler, make_storage, mask_url


def test_valid_study_resolves(write_study, tmp_path):
    cfg = load_study_config(write_study())
    assert cfg.name == "tiny" and cfg.directions == ["minimize"] and cfg.metrics == ["val_loss"]
    assert cfg.storage == f"sqlite:///{tmp_path / 'out' / 'tiny' / 'study.db'}"
    assert cfg.base_config["epochs"] == 9 and cfg.base_config["lr"] == 0.05  # defaults filled in
    assert cfg.trial_dir(3) == tmp_path / "out" / "tiny" / "trials" / "3"
    assert [p.name for p in cfg.tune_params] == ["lr", "momentum"]


def test_every_error_is_reported_at_once_with_its_key_path(write_study):
    path = write_study(
        sampler={"name": "tpes"},
        pruner={"name": "MedianPruner", "configs": {"n_startup": 3}},
        direction="sideways",
        n_trials=0,
        colate_results=True,
        tune_params={
            "lr": {"suggest": "float", "kwargs": {"low": 1.0, "high": 0.1}, "path": "lr"},
            "depth": {"suggest": "int", "kwargs": {"low": 1, "high": 3}, "path": "model.depth"},
        },
    )
    with pytest.raises(StudyConfigError) as info:
        load_study_config(path)
    msg = str(info.value)
    assert f"{path}: 7 error(s) in the study file" in msg
    for line in [
        "colate_results: unknown key; valid keys are name, output_dir",
        "sampler.name: unknown 'tpes'; choose one of",
        "pruner.configs.n_startup: unknown argument of MedianPruner; valid are n_startup_trials",
        "direction: unknown 'sideways'; choose one of minimize, maximize",
        "n_trials: must be an integer >= 1 or null, but got 0",
        "tune_params.lr.kwargs.low: low must be <= high, but got low=1.0 > high=0.1",
        "tune_params.depth.path: 'model.depth' is not a key of the hpo.testing:linear_regression config",
    ]:
        assert f"{path}: {line}" in msg
    assert len(info.value.errors) == 7
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"name": None}, r"name: required: a study name"),
        ({"trainable": "nosuch"}, r"trainable: unknown trainable 'nosuch'; choose one of fspnet, mlp"),
        ({"trainable": "nosuch_module_xyz:train"}, r"trainable: trainable 'nosuch_module_xyz:train': cannot import"),
        ({"config": {"epochz": 3}}, r"config: epochz: unknown key of hpo.testing:linear_regression"),
        ({"directions": ["minimize", "maximize"]}, r"metric: 1 metric\(s\) for 2 direction\(s\)"),
        ({"storage": "mysql-ish"}, r"storage: must be a SQLAlchemy URL"),
        ({"keep_top_k": -1}, r"keep_top_k: must be an integer >= 0"),
        ({"quick_scan": "lots"}, r"quick_scan: must be false or a positive number"),
        ({"timeout": -5}, r"timeout: must be a positive number of seconds"),
        ({"train_best": {"seeds": 0}}, r"train_best.seeds: must be an integer >= 1"),
        ({"timeout": float("inf")}, r"timeout: must be a finite number, but got inf"),
        ({"train_best": {"seed": 2}}, r"train_best.seed: unknown key; valid keys are seeds, config"),
        ({"collate_results": "yes"}, r"collate_results: expected bool, but got str 'yes'"),
        ({"config_file": "missing.yaml"}, r"config_file: file not found: missing.yaml"),
        ({"tune_params": None}, r"tune_params: required"),
        (
            {"pruner": {"name": "PatientPruner", "configs": {"wrapped_pruner": {"name": "Medianish"}}}},
            r"pruner.configs.wrapped_pruner.name: unknown 'Medianish'",
        ),
    ],
)
def test_bad_study_files(write_study, changes, match):
    with pytest.raises(StudyConfigError, match=match):
        load_study_config(write_study(**changes))


def test_bad_value_at_range_edge_is_caught_before_any_trial(tmp_path, write_study):
    path = write_study(
        trainable="mlp",
        config={"data": {"path": "x.npz"}},
        tune_params={
            "act": {"suggest": "cat", "kwargs": {"choices": ["relu", "swishy"]}, "path": "model.activation"},
            "layers": {"suggest": "int", "kwargs": {"low": -1, "high": 2}, "path": "model.layers"},
        },
    )
    with pytest.raises(StudyConfigError) as info:
        load_study_config(path)
    msg = str(info.value)
    assert "tune_params.act.kwargs: value 'swishy' makes an invalid config: model.activation: unknown 'swishy'" in msg
    assert "tune_params.layers.kwargs: value -1 makes an invalid config: model.layers: must be >= 0" in msg


def test_cli_exits_non_zero_on_a_bad_study(write_study, capsys):
    from hpo.run import main

    assert main(["--study", str(write_study(sampler={"name": "nope"})), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "sampler.name: unknown 'nope'" in err
    assert not (write_study().parent / "out").exists()  # nothing ran


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(StudyConfigError, match="study file not found"):
        load_study_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyConfigError, match="not valid YAML"):
        load_study_config(bad)


def test_sampler_and_pruner_factories():
    assert isinstance(make_sampler(None, seed=1), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random"), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler({"name": "NSGAIISampler", "configs": {"population_size": 10}}), optuna.samplers.NSGAIISampler)
    assert make_sampler({"name": "TPESampler", "configs": {"constant_liar": True, "multivariate": True}})._constant_liar
    sampler = optuna.samplers.QMCSampler()
    assert make_sampler(sampler) is sampler
    assert isinstance(make_pruner(None), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    patient = make_pruner({"name": "PatientPruner", "configs": {"patience": 2, "wrapped_pruner": {"name": "MedianPruner"}}})
    assert isinstance(patient, optuna.pruners.PatientPruner) and isinstance(patient._wrapped_pruner, optuna.pruners.MedianPruner)
    with pytest.raises(StudyConfigError, match=r"sampler.name: unknown 'tpes'; choose one of .*TPESampler"):
        make_sampler("tpes")
    with pytest.raises(StudyConfigError, match=r"pruner.configs: ThresholdPruner rejects them"):
        make_pruner({"name": "ThresholdPruner", "configs": {}})


def test_sqlite_storage_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'study.db'}"
    storage = make_storage(url)
    optuna.create_study(storage=storage, study_name="s")
    with sqlite3.connect(tmp_path / "sub" / "study.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_journal_storage(tmp_path):
    storage = make_storage(f"journal:{tmp_path / 'j' / 'study.log'}")
    assert isinstance(storage, optuna.storages.JournalStorage)
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert (tmp_path / "j" / "study.log").stat().st_size > 0


def test_passwords_are_masked():
    url = "postgresql+psycopg2://alice:s3cret@db.example:5432/optuna"
    assert mask_url(url) == "postgresql+psycopg2://alice:***@db.example:5432/optuna"
    assert "s3cret" not in mask_url(url)
    with pytest.raises(HpoError) as info:
        make_storage("postgresql+psycopg2://alice:s3cret@127.0.0.1:1/optuna?connect_timeout=1")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("name", ["quickstart", "mlp_example", "decoder"])
def test_shipped_studies_validate(name, monkeypatch):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)  # relative paths in study files are relative to the working directory
    cfg = load_study_config(Path("studies") / f"{name}.yaml")
    assert cfg.name == name and cfg.tune_params and cfg.pruner["name"] == "HyperbandPruner"


def test_worker_seeds_differ_per_worker_and_repeat_per_id():
    from hpo.run import worker_seed

    assert worker_seed(0, "a") == worker_seed(0, "a") != worker_seed(0, "b")
    assert worker_seed(0, "a") != worker_seed(1, "a")


def test_a_metric_scaled_by_a_tuned_loss_weight_is_refused(tmp_path):
    """The encoder's val_loss is recon + latent_weight x latent: tuning the weight on it drives
    the weight to its bound; val_latent_loss is not scaled and is accepted."""
    study = {
        "name": "enc",
        "output_dir": str(tmp_path / "out"),
        "trainable": "fspnet",
        "config": {"stage": "encoder", "encoder": {"decoder_run": str(tmp_path / "dec")}},
        "tune_params": {
            "latent_weight": {"state": True, "suggest": "float", "kwargs": {"low": 1e-3, "high": 1.0, "log": True},
                              "path": "encoder.latent_weight"},
        },
    }  # fmt: skip
    path = tmp_path / "enc.yaml"
    path.write_text(yaml.safe_dump({**study, "metric": "val_loss"}))
    with pytest.raises(StudyConfigError, match=r"metric: 'val_loss' is scaled by the tuned encoder.latent_weight"):
        load_study_config(path)
    path.write_text(yaml.safe_dump({**study, "metric": "val_latent_loss"}))
    assert load_study_config(path).metrics == ["val_latent_loss"]
