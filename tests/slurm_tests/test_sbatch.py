"""The pure parts of :mod:`slurm`: sbatch text (golden file), options, array plans, GPU shares."""

from __future__ import annotations

import difflib
import os
import pickle
import subprocess
from pathlib import Path

import pytest

from hpo._heartbeat import HeartbeatSettings
from hpo.errors import StudyConfigError
from slurm._sbatch import check_slurm_options, make_sbatch, plan_arrays, slurm_options, submitit_parameters
from slurm.launch import JobWorkers, SlurmLauncher
from slurm.launch import main as launch_main
from slurm.worker import assign_gpus

GOLDEN = Path(__file__).parent / "data" / "sbatch_golden.txt"
REPO = Path(__file__).resolve().parents[2]


def _golden_kwargs() -> dict:
    return dict(
        study="studies/decoder.yaml",
        n_trials=4,
        workers_per_task=2,
        array="0-15%4",
        partition="gpu",
        account="astro",
        qos="normal",
        time_min=1500,
        mem_gb=16,
        cpus_per_task=4,
        gpus_per_task=1,
        constraint="a100",
        log_dir="/shared/logs",
        setup=["module load cuda/12.4", "source ~/venvs/fspnet/bin/activate"],
        run_args=["--timeout", "36000"],
    )


def test_make_sbatch_matches_golden_file():
    text = make_sbatch(**_golden_kwargs())
    if os.environ.get("SLURM_ACCEPT_GOLDEN") == "1":
        GOLDEN.write_text(text)
    expected = GOLDEN.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now"))
    assert text == expected, (
        f"sbatch text changed:\n{diff}\nIf intended, accept it with:\n"
        f"  SLURM_ACCEPT_GOLDEN=1 python -m pytest {Path(__file__).relative_to(REPO)}"
    )


def test_make_sbatch_is_valid_bash_and_execs_the_worker():
    text = make_sbatch(study="s.yaml", array=None)
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    assert "#SBATCH --output=slurm_logs/%x_%j.out" in text and "--gres" not in text
    assert text.rstrip().endswith("exec python -m slurm.worker --study s.yaml --n-trials 1 --no-progress")


def test_static_launch_script_is_valid_bash_and_requeues():
    script = (REPO / "slurm" / "launch_hpo.sbatch").read_text()
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR2@120", "#SBATCH --open-mode=append"):
        assert line in script


def test_slurm_options_come_from_the_signature():
    opts = slurm_options()
    assert opts["time_min"] == 60 and opts["gpus_per_task"] is None
    assert "study" not in opts and "array" not in opts and "workers_per_task" not in opts
    assert "storage" not in opts  # the storage never goes into an sbatch script


def test_check_slurm_options_lists_every_problem():
    with pytest.raises(
        StudyConfigError, match=r"slurm\.tme_min: unknown option; valid options \(default\) are job_name='hpo'"
    ) as e:
        check_slurm_options({"tme_min": 5, "cpus_per_task": -1, "setup": "module load x"})
    assert [p for p, _ in e.value.errors] == ["slurm.tme_min", "slurm.cpus_per_task", "slurm.setup"]
    with pytest.raises(StudyConfigError, match=r"slurm\.mem_gb: must be a positive number of GB, but got 'lots'"):
        check_slurm_options({"mem_gb": "lots"})


def test_submitit_parameters_for_gpu_packing():
    opts = check_slurm_options({"partition": "gpu", "mem_gb": 8, "account": "astro"})
    params = submitit_parameters(opts, gpus_per_job=4, cpus_per_job=8)
    assert params["gres"] == "gpu:4" and params["cpus_per_task"] == 8 and params["mem"] == "8192MB"
    assert params["partition"] == "gpu" and params["account"] == "astro"
    assert params["additional_parameters"] == {"requeue": True}


@pytest.mark.parametrize(
    "n, max_size, parallel, expected",
    [
        (8, 1001, None, [(0, 8, 8)]),
        (1001, 1001, 10, [(0, 1001, 10)]),
        (1002, 1001, 10, [(0, 1001, 9), (1001, 1, 1)]),
        (2500, 1001, 300, [(0, 1001, 120), (1001, 1001, 120), (2002, 498, 59)]),
    ],
)
def test_plan_arrays_respects_max_array_size(n, max_size, parallel, expected):
    plan = plan_arrays(n, max_size, parallel)
    assert plan == expected
    assert sum(c for _, c, _ in plan) == n and all(c <= max_size for _, c, _ in plan)
    if parallel:
        assert sum(p for _, _, p in plan) <= max(parallel, len(plan))


@pytest.mark.parametrize(
    "key, value",
    [
        ("job_name", "hpo\n#SBATCH --account=stolen"),
        ("partition", "gpu debug"),
        ("qos", "a'b"),
        ("account", "x;rm -rf ~"),
        ("constraint", "a100\r"),
        ("log_dir", "logs/$(whoami)"),
        ("job_name", ""),
    ],
)
def test_values_that_break_an_sbatch_line_are_refused(key, value):
    with pytest.raises(
        StudyConfigError,
        match=rf"slurm\.{key}: must be one word of letters, digits and .*"
        rf"\(it goes into an #SBATCH line\), but got",
    ):
        check_slurm_options({key: value})
    with pytest.raises(StudyConfigError, match=rf"slurm\.{key}: must be one word"):
        make_sbatch(study="s.yaml", **{key: value})


def test_usual_sbatch_values_pass():
    check_slurm_options(
        {
            "job_name": "fspnet-dec_2",
            "partition": "gpu,gpu-long",
            "constraint": "a100&ib|h100",
            "log_dir": "/scratch/me/logs",
            "account": "astro@site",
        }
    )


def test_study_file_with_a_newline_in_the_job_name_fails_before_launch(tmp_path):
    from tests.slurm_tests._cluster import write_study

    study = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db", slurm={"job_name": "a\nb"})
    with pytest.raises(StudyConfigError, match=r"slurm\.job_name: must be one word"):
        SlurmLauncher(study, workers=2, trials_per_worker=1)


def test_sbatch_script_runs_every_worker_packed_with_their_gpus(tmp_path, capsys):
    """--workers 8 --trials-per-node 2: 4 array tasks × 2 workers, 2 GPUs and 2×CPUs per task."""
    from tests.slurm_tests._cluster import write_study

    study = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db", slurm={"cpus_per_task": 3})
    out = tmp_path / "out.sbatch"
    assert (
        launch_main(
            [
                "--study",
                str(study),
                "--workers",
                "8",
                "--trials-per-node",
                "2",
                "--trials-per-worker",
                "2",
                "--sbatch-script",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "#SBATCH --array=0-3\n" in text and "#SBATCH --gres=gpu:2\n" in text and "#SBATCH --cpus-per-task=6\n" in text
    assert "exec python -m slurm.worker --workers-per-task 2 --study" in text and "--n-trials 2" in text
    assert "4 array task(s) × 2 worker(s)" in capsys.readouterr().out
    two = make_sbatch(study="s.yaml", workers_per_task=2, gpus_per_task=3)
    assert "#SBATCH --gres=gpu:6\n" in two
    cpu_only = make_sbatch(study="s.yaml", workers_per_task=4, gpus_per_task=0)
    assert "--gres" not in cpu_only and "--workers-per-task 4" in cpu_only


def test_packing_asks_for_one_gpu_per_worker_by_default(tmp_path):
    from tests.slurm_tests._cluster import write_study

    study = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db")
    assert SlurmLauncher(study, workers=8, trials_per_worker=1, trials_per_node=4).gpus_per_job == 4
    assert SlurmLauncher(study, workers=8, trials_per_worker=1, trials_per_node=2, slurm={"gpus_per_task": 2}).gpus_per_job == 4
    assert SlurmLauncher(study, workers=8, trials_per_worker=1).gpus_per_job == 0


def test_the_storage_url_is_in_no_sbatch_script_nor_worker_argv(tmp_path, capsys):
    from tests.slurm_tests._cluster import write_study

    secret = "postgresql+psycopg2://me:s3cr3t-pw@db.example:5432/hpo"
    study = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db")
    launcher = SlurmLauncher(study, workers=2, trials_per_worker=1, storage=secret)
    assert "s3cr3t" not in " ".join(launcher.worker_argv())
    assert "s3cr3t" not in pickle.dumps(JobWorkers(launcher.worker_argv(), 2, launcher.env)).decode("latin-1")
    out = tmp_path / "out.sbatch"
    assert launch_main(["--study", str(study), "--workers", "2", "--storage", secret, "--sbatch-script", str(out)]) == 0
    assert "s3cr3t" not in out.read_text() and "s3cr3t" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "gpus, n, expected",
    [
        (["0", "1", "2", "3"], 2, [["0", "1"], ["2", "3"]]),
        (["0", "1", "2", "3"], 4, [["0"], ["1"], ["2"], ["3"]]),
        (["4", "5"], 2, [["4"], ["5"]]),
        (["0", "1", "2"], 2, [["0"], ["1"]]),
        (["0"], 2, [["0"], ["0"]]),
        ([], 3, [[], [], []]),
    ],
)
def test_assign_gpus_gives_each_packed_worker_its_own(gpus, n, expected):
    assert assign_gpus(gpus, n) == expected


def test_heartbeat_settings_from_env():
    s = HeartbeatSettings.from_env({"HPO_HEARTBEAT_S": "2"})
    assert (s.interval_s, s.grace_s) == (2.0, 8.0)
    with pytest.raises(ValueError, match="grace_s must be larger than interval_s"):
        HeartbeatSettings.from_env({"HPO_HEARTBEAT_S": "5", "HPO_GRACE_S": "5"})


def test_packed_workers_get_the_storage_url_in_their_environment_not_their_command_line(tmp_path, monkeypatch):
    from slurm.worker import run_packed

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*|$HPO_STORAGE" >> {tmp_path / "calls"}\n')
    fake.chmod(0o755)
    url = "postgresql://optuna:s3cret@db/optuna"
    assert run_packed(["--study", "s.yaml", "--storage", url, "--n-trials", "2"], 2, python=str(fake)) == 0
    assert run_packed(["--storage=" + url, "--study", "s.yaml"], 1, python=str(fake)) == 0
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:2] == [f"-m slurm.worker --study s.yaml --n-trials 2|{url}"] * 2
    assert calls[2] == f"-m slurm.worker --study s.yaml|{url}"
