"""The pure parts of :mod:`slurm`: sbatch text (golden file), options, array plans, worker keys."""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path

import pytest

from hpo._heartbeat import HeartbeatSettings, worker_key
from hpo.errors import StudyConfigError
from slurm._sbatch import check_slurm_options, make_sbatch, plan_arrays, slurm_options, submitit_parameters

GOLDEN = Path(__file__).parent / "data" / "sbatch_golden.txt"
REPO = Path(__file__).resolve().parents[2]


def _golden_kwargs() -> dict:
    return dict(study="studies/decoder.yaml", n_trials=4, array="0-15%4", partition="gpu", account="astro",
                qos="normal", time_min=1500, mem_gb=16, cpus_per_task=4, gpus_per_task=1, constraint="a100",
                log_dir="/shared/logs", setup=["module load cuda/12.4", "source ~/venvs/fspnet/bin/activate"],
                run_args=["--timeout", "36000"])


def test_make_sbatch_matches_golden_file():
    text = make_sbatch(**_golden_kwargs())
    if os.environ.get("SLURM_ACCEPT_GOLDEN") == "1":
        GOLDEN.write_text(text)
    expected = GOLDEN.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now"))
    assert text == expected, (f"sbatch text changed:\n{diff}\nIf intended, accept it with:\n"
                              f"  SLURM_ACCEPT_GOLDEN=1 python -m pytest {Path(__file__).relative_to(REPO)}")


def test_make_sbatch_is_valid_bash_and_execs_the_worker():
    text = make_sbatch(study="s.yaml", array=None)
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    assert "#SBATCH --output=slurm_logs/%x_%j.out" in text
    assert text.rstrip().endswith("exec python -m hpo.run --study s.yaml --n-trials 1 --no-progress")


def test_static_launch_script_is_valid_bash_and_requeues():
    script = (REPO / "slurm" / "launch_hpo.sbatch").read_text()
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR2@120", "#SBATCH --open-mode=append"):
        assert line in script


def test_slurm_options_come_from_the_signature():
    opts = slurm_options()
    assert opts["time_min"] == 60 and opts["gpus_per_task"] == 0
    assert "study" not in opts and "array" not in opts


def test_check_slurm_options_lists_every_problem():
    with pytest.raises(StudyConfigError, match=r"slurm\.tme_min: unknown option; valid options \(default\) are job_name='hpo'") as e:
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


def test_worker_key_is_stable_across_requeues():
    array = {"SLURM_ARRAY_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "45", "SLURM_RESTART_COUNT": "2"}
    assert worker_key(array) == "slurm:41_3"
    assert worker_key({**array, "HPO_WORKER_INDEX": "1"}) == "slurm:41_3.1"
    assert worker_key({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "2"}) == "slurm:7.2"
    assert worker_key({"HPO_WORKER_KEY": "mine", "SLURM_JOB_ID": "7"}) == "mine"
    assert worker_key({}).startswith("local:")


def test_heartbeat_settings_from_env():
    s = HeartbeatSettings.from_env({"HPO_HEARTBEAT_S": "2"})
    assert (s.interval_s, s.grace_s) == (2.0, 8.0)
    with pytest.raises(ValueError, match="grace_s must be larger than interval_s"):
        HeartbeatSettings.from_env({"HPO_HEARTBEAT_S": "5", "HPO_GRACE_S": "5"})
