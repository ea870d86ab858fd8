"""End-to-end on the real dev cluster: sbatch arrays, submitit, GPU packing, kills, preemption.

Run ``bash slurm/dev-cluster/up.sh`` first (the tests skip otherwise; they never start it). Every test
uses the tiny trainables of :mod:`slurm.testing`, so the whole module takes a few minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from hpo._heartbeat import HEARTBEAT_KEY, REAPED_KEY, owner_of
from hpo.objective import trial_seed
from slurm._preempt import RESUMES_KEY
from slurm.launch import SlurmLauncher
from slurm.testing import counter_trainable
from tests.slurm_tests._cluster import REPO, load, sacct_states, squeue_empty, trial_dir, trials_or_empty, wait_for, write_study

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SBATCH = REPO / "slurm" / "launch_hpo.sbatch"
#: Short heartbeats so that dead workers are found in seconds.
FAST = {"HPO_HEARTBEAT_S": "1", "HPO_GRACE_S": "4"}


def _sbatch(study: Path, tmp_path: Path, *args: str, n_trials: int = 1, env: dict | None = None, script: Path = SBATCH) -> str:
    proc = subprocess.run(
        ["sbatch", "--parsable", "-o", f"{tmp_path}/%x_%A_%a.out", *args, str(script)],
        env={**os.environ, "STUDY": str(study), "N_TRIALS": str(n_trials), **(env or {})},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip().split(";")[0]


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(tmp_path.rglob("*.out")))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _uninterrupted(study_file: Path, trial, tmp_path: Path) -> float:
    """The final val_loss of the same trial trained in one go."""
    raw = yaml.safe_load(study_file.read_text())
    config = {
        **raw["config"],
        **trial.params,
        "seed": trial_seed(raw.get("seed", 0), trial.number),
        "run_dir": str(tmp_path / "reference"),
        "resume": False,
    }
    return counter_trainable(config)["metrics"]["val_loss"]


@pytest.mark.postgres
def test_sbatch_array_of_4_completes_a_postgres_study(slurm_cluster, pg_url, tmp_path):
    study_file = write_study(tmp_path, storage=pg_url)
    job = _sbatch(study_file, tmp_path, "--array=0-3", n_trials=2)
    wait_for(lambda: squeue_empty(job), 240, f"array job {job}")
    study = load(study_file)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8, _logs(tmp_path)
    assert {owner_of(t) for t in trials} == {f"slurm:{job}_{i}" for i in range(4)}
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(s.endswith("|COMPLETED") for s in sacct_states(job)), sacct_states(job)
    logs = _logs(tmp_path)
    assert logs.count("[hpo] job") == 4 and ":optuna@" not in logs  # the password is never printed


def test_hpo_launch_via_submitit(slurm_cluster, tmp_path, capsys):
    from slurm.launch import main

    study_file = write_study(
        tmp_path, storage=f"journal:{tmp_path}/study.journal", slurm={"time_min": 10, "job_name": "hpo-test"}
    )
    assert main(["--study", str(study_file), "--workers", "3", "--trials-per-worker", "2", "--wait", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 Slurm job(s) [" in out and "report: python -m hpo.report" in out
    assert "6 complete, 0 pruned, 0 failed, 0 running" in out
    study = load(study_file)
    assert len({owner_of(t) for t in study.get_trials()}) == 3


def _need_gpus(n: int) -> None:
    n_gpus = int(os.environ.get("SLURM_DEV_GPUS", "4"))
    if n_gpus < n:
        pytest.skip(f"needs {n} fake GPUs on the dev node, it has {n_gpus}")


def test_gpu_packing_pins_one_fake_gpu_per_worker_by_default(slurm_cluster, tmp_path):
    """--trials-per-node 2 without --gpus-per-task asks for 2 GPUs a job and pins one per worker."""
    _need_gpus(4)
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/study.db")
    launcher = SlurmLauncher(study_file, workers=4, trials_per_worker=1, trials_per_node=2)
    jobs = launcher.launch()
    assert len(jobs) == 2
    counts = launcher.wait(progress=False, timeout_s=240)
    assert counts.complete == 4, [j.stderr() for j in jobs]
    study = load(study_file)
    runs = [_jsonl(trial_dir(study_file, t.number) / "workers.jsonl")[0] for t in study.get_trials()]
    devices = [r["cuda_visible_devices"] for r in runs]
    assert all(d is not None and "," not in d for d in devices), devices  # one GPU each
    assert len(set(devices)) == 4, devices  # no GPU shared, across and within jobs
    by_job: dict[str, set] = {}
    for r in runs:
        by_job.setdefault(r["slurm_job"], set()).add(r["worker_index"])
    assert sorted(map(sorted, by_job.values())) == [["0", "1"], ["0", "1"]]


def test_sigkill_of_a_worker_retries_its_trial_with_the_same_params(slurm_cluster, tmp_path):
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/study.journal", config={"epochs": 40, "epoch_s": 0.5})
    job = _sbatch(study_file, tmp_path, n_trials=1, env=FAST)
    wait_for(lambda: any(HEARTBEAT_KEY in t.system_attrs for t in trials_or_empty(study_file)), 90, "a heartbeat")
    (start,) = wait_for(lambda: _jsonl(trial_dir(study_file, 0) / "workers.jsonl"), 30, "the worker's pid")
    os.kill(start["pid"], signal.SIGKILL)  # the worker process itself, mid-trial: no handler runs
    wait_for(lambda: squeue_empty(job), 60, f"killed job {job}")
    time.sleep(float(FAST["HPO_GRACE_S"]))  # let its heartbeat go stale
    # A fresh worker finds the dead trial, fails it and runs its params again (shorter epochs).
    short = write_study(
        tmp_path,
        storage=f"journal:{tmp_path}/study.journal",
        name=yaml.safe_load(study_file.read_text())["name"],
        config={"epochs": 2, "epoch_s": 0.1},
    )
    job2 = _sbatch(short, tmp_path, n_trials=1, env=FAST)
    wait_for(lambda: squeue_empty(job2), 120, f"job {job2}")
    study = load(study_file)
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and "heartbeat stale" in first.system_attrs[REAPED_KEY]["reason"]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == first.number
    assert retry.params == first.params
    assert len(study.get_trials()) == 2  # counts add up: one failed, one retry, nothing else


def _wait_for_epochs(study_file: Path, n: int) -> Path:
    def run_dir():
        trials = trials_or_empty(study_file, states=(TrialState.RUNNING,))
        if trials:
            d = trial_dir(study_file, trials[0].number)
            return d if len(_jsonl(d / "epochs.jsonl")) >= n else None
        return None

    return wait_for(run_dir, 120, f"{n} epochs of the first trial", poll_s=0.2)


def _check_resumed(study_file: Path, run_dir: Path, tmp_path: Path) -> None:
    study = load(study_file)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.number == 0, _logs(tmp_path)
    assert trial.system_attrs[RESUMES_KEY] == 1
    starts = _jsonl(run_dir / "workers.jsonl")
    assert [s["resume"] for s in starts] == [False, True] and starts[0]["pid"] != starts[1]["pid"]
    epochs = [e["epoch"] for e in _jsonl(run_dir / "epochs.jsonl")]
    assert sorted(set(epochs)) == list(range(8)) and len(epochs) - len(set(epochs)) <= 1  # at most one epoch redone
    assert sorted(trial.intermediate_values) == list(range(8))
    assert trial.value == pytest.approx(_uninterrupted(study_file, trial, tmp_path), abs=1e-12)


def test_preemption_via_submitit_resumes_the_same_trial(slurm_cluster, tmp_path):
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/study.journal", config={"epochs": 8, "epoch_s": 0.5})
    launcher = SlurmLauncher(study_file, workers=1, trials_per_worker=1)
    (job,) = launcher.launch()
    run_dir = _wait_for_epochs(study_file, 2)
    job._interrupt()  # what Slurm does on preemption: SIGTERM, then SIGUSR2
    counts = launcher.wait(progress=False, timeout_s=180)
    assert counts.complete == 1
    _check_resumed(study_file, run_dir, tmp_path)


def test_walltime_signal_to_sbatch_job_resumes_the_same_trial(slurm_cluster, tmp_path):
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/study.db", config={"epochs": 8, "epoch_s": 0.5})
    job = _sbatch(study_file, tmp_path, n_trials=1)
    run_dir = _wait_for_epochs(study_file, 2)
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True)  # as --signal=B:USR2@120 does
    wait_for(lambda: squeue_empty(job), 180, f"requeued job {job}")
    _check_resumed(study_file, run_dir, tmp_path)
    assert "restart 1" in _logs(tmp_path)


def test_scancel_fails_and_retries_the_trial_at_once(slurm_cluster, tmp_path):
    """A cancelled job will not come back: its checkpointed trial is retried, not held."""
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/study.journal", config={"epochs": 40, "epoch_s": 0.5})
    job = _sbatch(study_file, tmp_path, n_trials=1)
    _wait_for_epochs(study_file, 1)
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: squeue_empty(job), 60, f"cancelled job {job}")
    first, retry = wait_for(lambda: len(trials_or_empty(study_file)) == 2 and trials_or_empty(study_file), 30, "the retry")
    assert first.state == TrialState.FAIL and "SIGTERM" in first.system_attrs[REAPED_KEY]["reason"]
    assert retry.state == TrialState.WAITING and retry.params == first.params
    assert retry.user_attrs["retry_of"] == first.number


def test_preemption_of_a_packed_job_resumes_every_worker_trial(slurm_cluster, tmp_path):
    study_file = write_study(
        tmp_path, storage=f"journal:{tmp_path}/study.journal", config={"epochs": 8, "epoch_s": 0.5}, slurm={"gpus_per_task": 1}
    )
    launcher = SlurmLauncher(study_file, workers=2, trials_per_worker=1, trials_per_node=2)
    (job,) = launcher.launch()
    wait_for(
        lambda: all(len(_jsonl(trial_dir(study_file, n) / "epochs.jsonl")) >= 2 for n in (0, 1)),
        120,
        "2 epochs of both trials",
        poll_s=0.2,
    )
    job._interrupt()
    counts = launcher.wait(progress=False, timeout_s=180)
    assert counts.complete == 2 and counts.failed == 0, job.stderr()
    for trial in load(study_file).get_trials():
        starts = _jsonl(trial_dir(study_file, trial.number) / "workers.jsonl")
        assert [s["resume"] for s in starts] == [False, True]
        assert starts[0]["worker_index"] == starts[1]["worker_index"]  # resumed by the same packed worker
        assert trial.value == pytest.approx(_uninterrupted(study_file, trial, tmp_path / str(trial.number)), abs=1e-12)


def test_gpu_packing_gives_each_worker_its_own_two_gpus(slurm_cluster, tmp_path):
    """--gpus-per-task 2 with 2 workers a job: the job holds 4 GPUs and each worker gets 2 of them."""
    _need_gpus(4)
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/study.journal", slurm={"gpus_per_task": 2})
    launcher = SlurmLauncher(study_file, workers=2, trials_per_worker=1, trials_per_node=2)
    (job,) = launcher.launch()
    counts = launcher.wait(progress=False, timeout_s=240)
    assert counts.complete == 2, job.stderr()
    devices = [
        _jsonl(trial_dir(study_file, t.number) / "workers.jsonl")[0]["cuda_visible_devices"]
        for t in load(study_file).get_trials()
    ]
    shares = [set(d.split(",")) for d in devices]
    assert all(len(s) == 2 for s in shares) and not shares[0] & shares[1], devices  # own GPUs
    assert len(shares[0] | shares[1]) == 4  # every GPU of the job is used


def test_written_sbatch_script_runs_every_packed_worker(slurm_cluster, tmp_path):
    """hpo.launch --sbatch-script --workers 4 --trials-per-node 2: 2 tasks × 2 workers × 2 trials."""
    from slurm.launch import main

    _need_gpus(2)
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/study.journal")
    script = tmp_path / "out.sbatch"
    assert (
        main(
            [
                "--study",
                str(study_file),
                "--workers",
                "4",
                "--trials-per-node",
                "2",
                "--trials-per-worker",
                "2",
                "--sbatch-script",
                str(script),
            ]
        )
        == 0
    )
    job = _sbatch(study_file, tmp_path, script=script)
    wait_for(lambda: squeue_empty(job), 240, f"array job {job}")
    trials = load(study_file).get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials), _logs(tmp_path)
    assert {owner_of(t) for t in trials} == {f"slurm:{job}_{i}.{w}" for i in range(2) for w in range(2)}
    runs = [_jsonl(trial_dir(study_file, t.number) / "workers.jsonl")[0] for t in trials]
    by_job: dict[str, set] = {}
    for r in runs:
        by_job.setdefault(r["slurm_job"], set()).add(r["cuda_visible_devices"])
    assert len(by_job) == 2 and all(len(d) == 2 and None not in d for d in by_job.values()), by_job


def _ps_args() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


@pytest.mark.postgres
def test_the_storage_password_is_on_no_command_line_job_record_or_script(slurm_cluster, pg_url, tmp_path):
    """HPO_STORAGE travels in the environment: ps, scontrol show job and the job script never show it."""
    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    secret = f":{password}@"
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/unused.db", config={"epochs": 20, "epoch_s": 0.5})
    job = _sbatch(study_file, tmp_path, n_trials=1, env={"HPO_STORAGE": pg_url})
    wait_for(lambda: trials_or_empty(study_file, storage=pg_url), 90, "the worker's first trial on PostgreSQL")
    seen = {
        "ps": _ps_args(),
        "scontrol show job": subprocess.run(["scontrol", "show", "job", "-d", job], capture_output=True, text=True).stdout,
        "job script": subprocess.run(["scontrol", "write", "batch_script", job, "-"], capture_output=True, text=True).stdout,
    }
    assert "slurm.worker" in seen["ps"] and "launch_hpo.sbatch" in seen["scontrol show job"]
    assert "exec ${HPO_PYTHON:-python} -m slurm.worker" in seen["job script"]
    for where, text in seen.items():
        assert secret not in text and pg_url not in text, f"the password shows in {where}"
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: squeue_empty(job), 60, f"cancelled job {job}")
    assert secret not in _logs(tmp_path)


def test_scontrol_requeue_mid_epoch_resumes_the_same_trial_exactly(slurm_cluster, tmp_path):
    """Epochs of 8 s, longer than KillWait (5 s): the trial checkpoints at its next batch on the
    requeue's SIGTERM and resumes mid-epoch; its values equal an uninterrupted run's."""
    study_file = write_study(
        tmp_path, storage=f"journal:{tmp_path}/study.journal", config={"epochs": 3, "epoch_s": 8.0, "batches": 40}
    )
    job = _sbatch(study_file, tmp_path, n_trials=1)
    run_dir = _wait_for_epochs(study_file, 1)
    time.sleep(2.0)  # well inside epoch 1
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: _jsonl(run_dir / "interrupts.jsonl"), 30, "the mid-epoch checkpoint")
    wait_for(lambda: squeue_empty(job), 180, f"requeued job {job}")
    study = load(study_file)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.system_attrs[RESUMES_KEY] == 1, _logs(tmp_path)
    (stop,) = _jsonl(run_dir / "interrupts.jsonl")
    assert stop["epoch"] == 1 and 0 < stop["batch"] < 40
    assert [e["epoch"] for e in _jsonl(run_dir / "epochs.jsonl")] == [0, 1, 2]  # no epoch redone
    raw = yaml.safe_load(study_file.read_text())
    ref: list[float] = []
    counter_trainable(
        {
            **raw["config"],
            **trial.params,
            "epoch_s": 0.0,
            "seed": trial_seed(raw.get("seed", 0), 0),
            "run_dir": str(tmp_path / "reference"),
        },
        lambda e, m: ref.append(m["val_loss"]),
    )
    assert [trial.intermediate_values[e] for e in range(3)] == ref


def test_trials_per_gpu_puts_two_workers_on_each_fake_gpu(slurm_cluster, tmp_path):
    """--trials-per-node 4 --trials-per-gpu 2: one job of 2 GPUs, two workers on each, half the memory each."""
    _need_gpus(2)
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/study.journal", slurm={"trials_per_gpu": 2})
    launcher = SlurmLauncher(study_file, workers=4, trials_per_worker=1, trials_per_node=4)
    assert launcher.gpus_per_job == 2
    (job,) = launcher.launch()
    counts = launcher.wait(progress=False, timeout_s=240)
    assert counts.complete == 4, job.stderr()
    runs = [_jsonl(trial_dir(study_file, t.number) / "workers.jsonl")[0] for t in load(study_file).get_trials()]
    on_gpu: dict[str, list[str]] = {}
    for r in runs:
        on_gpu.setdefault(r["cuda_visible_devices"], []).append(r["worker_index"])
    assert len(on_gpu) == 2 and all("," not in d for d in on_gpu), on_gpu  # 2 distinct GPUs, one each
    assert sorted(map(sorted, on_gpu.values())) == [["0", "1"], ["2", "3"]], on_gpu  # worker i on GPU i // 2
    assert {r["gpu_memory_fraction"] for r in runs} == {"0.5"}
    assert len({r["slurm_job"] for r in runs}) == 1
