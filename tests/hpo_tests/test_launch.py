"""python -m hpo.launch: the same --sampler/--pruner/--set overrides as python -m hpo.run."""

from __future__ import annotations

import pytest
import yaml
from optuna.trial import TrialState

from hpo.launch import main
from hpo.study import load_study_config
from slurm.launch import SlurmLauncher
from tests.slurm_tests._cluster import export_repo_path, load, write_study


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    return write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db", config={"epochs": 1, "epoch_s": 0.0})


def test_overrides_are_validated_with_the_file_and_reach_every_worker(study, tmp_path, capsys):
    out = tmp_path / "w.sbatch"
    assert (
        main(
            [
                "--study",
                str(study),
                "--workers",
                "2",
                "--sbatch-script",
                str(out),
                "--sampler",
                "TPESampler",
                "--pruner",
                "MedianPruner",
                "--set",
                "config.epochs=3",
                "--set",
                f"output_dir={tmp_path / 'moved'}",
            ]
        )
        == 0
    )
    text = out.read_text()
    assert (
        f"--set sampler=TPESampler --set pruner=MedianPruner --set config.epochs=3 --set output_dir={tmp_path / 'moved'}"
    ) in text
    launcher = SlurmLauncher(
        study, workers=2, trials_per_worker=1, overrides=["config.epochs=3", f"output_dir={tmp_path / 'moved'}"]
    )
    assert launcher.cfg.base_config["epochs"] == 3 and launcher.folder == tmp_path / "moved" / launcher.cfg.name / "slurm"
    argv = launcher.worker_argv()
    assert argv[argv.index("--set") : argv.index("--set") + 4] == [
        "--set",
        "config.epochs=3",
        "--set",
        f"output_dir={tmp_path / 'moved'}",
    ]
    # the worker reads the same overrides into the same config as the launcher did
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert load_study_config(study, overrides=sets).base_config == launcher.cfg.base_config
    assert f"--study {study} --set config.epochs=3 --set output_dir={tmp_path / 'moved'} →" in launcher.describe()


def test_a_bad_override_fails_before_anything_is_submitted(study, tmp_path, capsys):
    folder = tmp_path / "jobs"
    assert main(["--study", str(study), "--executor", "local", "--folder", str(folder), "--sampler", "TPESamplr"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpo-launch: error: ") and "sampler" in err and "TPESamplr" in err and "TPESampler" in err
    assert not folder.exists()


def test_the_storage_is_never_an_override(study, tmp_path, capsys):
    assert (
        main(
            [
                "--study",
                str(study),
                "--sbatch-script",
                str(tmp_path / "w.sbatch"),
                "--set",
                "storage=postgresql+psycopg://me:pw@db/hpo",
            ]
        )
        == 2
    )
    assert (
        "--set storage=...: the storage URL would be written into every worker's command line; pass it with "
        "--storage or $HPO_STORAGE" in capsys.readouterr().err
    )
    assert not (tmp_path / "w.sbatch").exists()


@pytest.mark.slow
def test_local_workers_run_with_the_overrides(study, tmp_path):
    export_repo_path()
    assert (
        main(
            [
                "--study",
                str(study),
                "--executor",
                "local",
                "--workers",
                "2",
                "--trials-per-worker",
                "1",
                "--wait",
                "--no-progress",
                "--set",
                "config.epochs=3",
                "--set",
                "tune_params.y.state=false",
            ]
        )
        == 0
    )
    trials = load(study).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(len(t.intermediate_values) == 3 and set(t.params) == {"x"} for t in trials)
    assert yaml.safe_load(study.read_text())["config"]["epochs"] == 1  # the file itself is untouched


def test_report_takes_the_same_set_as_the_workers(study, tmp_path, capsys):
    from hpo.report import main as report_main
    from hpo.run import main as run_main

    moved = tmp_path / "moved"
    export_repo_path()
    assert (
        run_main(["--study", str(study), "--n-trials", "1", "--no-progress", "--no-collate", "--set", f"output_dir={moved}"]) == 0
    )
    assert report_main(["--study", str(study), "--set", f"output_dir={moved}"]) == 0
    name = yaml.safe_load(study.read_text())["name"]
    assert f"report: {moved / name / 'report.html'}" in capsys.readouterr().out and (moved / name / "report.html").is_file()
    assert report_main(["--study", str(study), "--set", "n_trials=zero"]) == 2
    assert "n_trials" in capsys.readouterr().err


def test_local_jobs_have_no_time_limit_unless_one_is_set(study):
    # Slurm's 60-minute default killed a local study's last trial at its 60-minute timeout
    from slurm.launch import LOCAL_TIMEOUT_MIN

    assert SlurmLauncher(study, workers=1, trials_per_worker=1, executor="local").local_timeout_min == LOCAL_TIMEOUT_MIN
    limited = SlurmLauncher(study, workers=1, trials_per_worker=1, executor="local", slurm={"time_min": 5})
    assert limited.local_timeout_min == 5 and limited.options["time_min"] == 5
