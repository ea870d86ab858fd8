"""Preemption (``slurm._preempt``): a signal interrupts the trial at its next batch, the trial is
suspended and resumed as the same trial, exactly where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from hpo._heartbeat import HEARTBEAT_KEY, REAPED_KEY, SUSPENDED_KEY, HeartbeatSettings, worker_key
from hpo.study import make_storage
from slurm._preempt import (
    PREEMPTED_EXIT_CODE,
    RESUMES_KEY,
    PreemptionHandler,
    TrialPreempted,
    claim_own_trials,
    reap_orphaned_suspended,
    slurm_job_spec,
    slurm_worker_key,
    suspend_trial,
    worker_extensions,
)
from slurm.testing import counter_trainable
from tests.slurm_tests._cluster import (
    load,
    slurm_worker,
    trial_dir,
    trials_or_empty,
    uninterrupted_values,
    wait_for,
    write_study,
)


def _jsonl(path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()] if path.exists() else []


def test_handler_turns_signals_into_interrupt_checkpoint_and_stop():
    before = signal.getsignal(signal.SIGUSR2)
    interrupt = threading.Event()
    with PreemptionHandler() as handler:
        handler.add_event(interrupt)
        wrapped = handler.wrap(lambda epoch, metrics: {"stop"} if epoch > 5 else None)
        assert wrapped(0, {}) is None and wrapped(6, {}) == {"stop"}
        assert not interrupt.is_set()
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        assert handler.requested and handler.requeue and handler.received == ["SIGUSR2"]
        assert interrupt.is_set() and handler.event.is_set()  # the trainable stops at its next batch
        late = threading.Event()
        handler.add_event(late)  # an event added after the signal is set at once
        assert late.is_set()
        assert wrapped(1, {}) == {"checkpoint", "stop"}
        with pytest.raises(TrialPreempted) as e:
            handler.raise_if_requested()
        assert e.value.code == PREEMPTED_EXIT_CODE
    assert signal.getsignal(signal.SIGUSR2) == before


def test_a_signal_arriving_while_the_event_lock_is_held_does_not_deadlock():
    """submitit sends SIGTERM and SIGUSR2 back to back: the second handler may run inside the
    first one's ``Event.set`` (or inside ``Event.wait``), with the event's lock held."""
    interrupt = threading.Event()
    handler = PreemptionHandler()
    handler.add_event(interrupt)
    handler.install()
    try:

        def signal_inside_the_lock() -> None:
            with interrupt._cond:  # what the main thread holds inside Event.set / Event.wait
                handler._handle(signal.SIGUSR2, None)

        t = threading.Thread(target=signal_inside_the_lock, daemon=True)
        t.start()
        t.join(timeout=5)
        assert not t.is_alive(), "the signal handler deadlocked on the interrupt event's lock"
        assert interrupt.wait(timeout=5) and handler.requeue
    finally:
        handler.uninstall()


def test_sigterm_alone_does_not_ask_for_a_requeue():
    with PreemptionHandler() as handler:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert handler.requested and not handler.requeue


def test_worker_extensions_outside_the_main_thread_is_an_error():
    errors: list[BaseException] = []

    def build() -> None:
        try:
            worker_extensions({})
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    t = threading.Thread(target=build)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "slurm.worker: the preemption handler needs the main thread" in str(errors[0])


def test_slurm_worker_key_is_stable_across_requeues():
    array = {"SLURM_ARRAY_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "45", "SLURM_RESTART_COUNT": "2"}
    assert slurm_worker_key(array) == "slurm:41_3"
    assert slurm_worker_key({**array, "HPO_WORKER_INDEX": "1"}) == "slurm:41_3.1"
    assert slurm_worker_key({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "2"}) == "slurm:7.2"
    assert slurm_worker_key({"HPO_WORKER_KEY": "mine", "SLURM_JOB_ID": "7"}) == "mine"
    assert slurm_worker_key({}).startswith("local:")
    # hpo knows nothing of Slurm: its own key comes from HPO_WORKER_KEY, which slurm.worker exports
    assert worker_key({"SLURM_JOB_ID": "7", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "1"}).startswith("local:")
    assert worker_key({"HPO_WORKER_KEY": "slurm:7_1"}) == "slurm:7_1"


def test_slurm_job_spec_names_the_array_task_not_the_whole_array():
    """One task of an array holds the array's own id: ``scontrol requeue <id>`` would requeue them all."""
    task = {"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "57", "SLURM_ARRAY_TASK_ID": "3"}
    assert slurm_job_spec(task) == "57_3"
    assert slurm_job_spec({"SLURM_JOB_ID": "45"}) == "45"
    assert slurm_job_spec({}) is None


def test_suspended_trial_of_a_job_that_left_the_queue_is_retried(tmp_path):
    from tests.slurm_tests._cluster import require_slurm

    require_slurm()
    study = optuna.create_study(study_name="o", storage=make_storage(f"journal:{tmp_path}/s.journal"))
    trials = [study.ask() for _ in range(2)]
    for t in trials:
        t.suggest_float("x", 0, 1)
    gone = "987654321_0"  # a job Slurm does not know (any more): cancelled, failed, purged
    queued = (
        subprocess.run(
            ["sbatch", "--parsable", "--hold", "--wrap", "true", "-o", "/dev/null"], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .split(";")[0]
    )
    try:
        for t, job in zip(trials, (gone, queued)):
            suspend_trial(study, t._trial_id, f"slurm:{job}")
        assert reap_orphaned_suspended(study, "slurm:1_0", HeartbeatSettings()) == [0]
    finally:
        subprocess.run(["scancel", queued], check=False)
    first, held, retry = study.get_trials()
    assert first.state == TrialState.FAIL and f"its Slurm job {gone} is gone" in first.system_attrs[REAPED_KEY]["reason"]
    assert held.state == TrialState.RUNNING  # its job is still queued: it will resume it
    assert retry.state == TrialState.WAITING and retry.params == first.params


def test_claim_resumes_the_suspended_trial_and_retries_the_unsuspended(tmp_path):
    study = optuna.create_study(study_name="c", storage=make_storage(f"journal:{tmp_path}/s.journal"))
    trials = [study.ask() for _ in range(3)]
    for t in trials:
        t.suggest_float("x", 0, 1)
    owners = ["slurm:7_1", "slurm:7_1", "slurm:7_2"]
    for t, owner in zip(trials, owners):
        study._storage.set_trial_system_attr(t._trial_id, HEARTBEAT_KEY, {"t": time.time(), "worker": owner})
    study._storage.set_trial_system_attr(trials[1]._trial_id, SUSPENDED_KEY, time.time())
    got = claim_own_trials(study, "slurm:7_1", HeartbeatSettings())
    assert got.number == 1 and got.state == TrialState.RUNNING
    states = [t.state for t in study.get_trials()]
    # trial 0 was ours but not checkpointed: failed and retried at once; trial 2 belongs to another task
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    assert "without a checkpoint" in study.get_trials()[0].system_attrs[REAPED_KEY]["reason"]
    assert study.get_trials()[1].system_attrs[RESUMES_KEY] == 1


@pytest.mark.parametrize("stop_after", [1, 4, 6, 13])
def test_counter_trainable_interrupted_at_any_batch_resumes_exactly(tmp_path, stop_after):
    config = {"epochs": 3, "epoch_s": 0.0, "batches": 6, "x": 0.1, "y": -0.2, "seed": 5}
    reference: list[float] = []
    counter_trainable({**config, "run_dir": str(tmp_path / "ref")}, lambda e, m: reference.append(m["val_loss"]))
    interrupt, seen = threading.Event(), []

    def callback(epoch: int, metrics: dict) -> None:
        seen.append(metrics["val_loss"])

    class _Clock:  # sets the interrupt during batch `stop_after` (counted across epochs)
        n = 0

    import slurm.testing._trainables as module

    real_sleep = module.time.sleep

    def sleep(s: float) -> None:
        _Clock.n += 1
        if _Clock.n == stop_after:
            interrupt.set()

    module.time.sleep = sleep
    try:
        first = counter_trainable({**config, "run_dir": str(tmp_path / "run")}, callback, interrupt)
    finally:
        module.time.sleep = real_sleep
    assert first["stopped"] == "interrupted"
    assert _jsonl(tmp_path / "run" / "interrupts.jsonl")[0]["batch"] == (stop_after - 1) % 6 + 1
    second = counter_trainable({**config, "run_dir": str(tmp_path / "run"), "resume": True}, callback)
    assert second["stopped"] == "max_epochs"
    assert seen == reference  # bitwise: the same values as an uninterrupted run


def _wait_batches(study_file, n_epochs_done: int = 0):
    def started():
        if not trials_or_empty(study_file):
            return False
        return (
            len(_jsonl(trial_dir(study_file, 0) / "epochs.jsonl")) >= n_epochs_done
            and (trial_dir(study_file, 0) / "workers.jsonl").exists()
        )

    return wait_for(started, 90, f"trial 0 past {n_epochs_done} epoch(s)", poll_s=0.1)


@pytest.mark.slow
def test_sigterm_mid_epoch_stops_at_the_next_batch_and_the_same_trial_resumes_exactly(tmp_path):
    """Epochs of 6 s (longer than the dev cluster's KillWait of 5 s) stop within a batch."""
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db", config={"epochs": 3, "epoch_s": 6.0, "batches": 30})
    env = {"HPO_WORKER_KEY": "laptop-1"}  # a caller-given key promises a restart with the same key
    proc = slurm_worker(study_file, 1, env=env)
    _wait_batches(study_file, 1)
    time.sleep(1.0)  # mid-epoch 1
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == PREEMPTED_EXIT_CODE
    stop_s = time.monotonic() - t0
    (trial,) = load(study_file).get_trials()
    assert trial.state == TrialState.RUNNING and trial.system_attrs[SUSPENDED_KEY] is not None
    (stop,) = _jsonl(trial_dir(study_file, 0) / "interrupts.jsonl")
    assert stop["epoch"] == 1 and 0 < stop["batch"] < 30  # mid-epoch, not at its end
    assert stop_s < 5.0, f"took {stop_s:.1f} s to checkpoint (KillWait is 5 s)"
    assert slurm_worker(study_file, 1, env=env).wait(timeout=120) == 0
    (trial,) = load(study_file).get_trials()
    assert trial.state == TrialState.COMPLETE and trial.number == 0
    assert trial.system_attrs[RESUMES_KEY] == 1 and sorted(trial.intermediate_values) == [0, 1, 2]
    assert [s["resume"] for s in _jsonl(trial_dir(study_file, 0) / "workers.jsonl")] == [False, True]
    assert [e["epoch"] for e in _jsonl(trial_dir(study_file, 0) / "epochs.jsonl")] == [0, 1, 2]  # none redone
    assert [trial.intermediate_values[e] for e in range(3)] == uninterrupted_values(study_file, trial, tmp_path / "ref")


@pytest.mark.slow
def test_stopped_worker_without_a_stable_key_retries_its_trial(tmp_path):
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/s.journal", config={"epochs": 40, "epoch_s": 0.3})
    proc = slurm_worker(study_file, 1)
    _wait_batches(study_file, 1)
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=60) == PREEMPTED_EXIT_CODE
    first, retry = load(study_file).get_trials()
    assert first.state == TrialState.FAIL and "nobody will resume it" in first.system_attrs[REAPED_KEY]["reason"]
    assert retry.state == TrialState.WAITING and retry.params == first.params
    assert retry.user_attrs["retry_of"] == first.number


def test_retries_do_not_use_up_max_trials(tmp_path):
    """A dead trial's retry continues its chain: the study still completes ``max_trials`` trials
    (the chaos suite's "completed = target" with SIGKILLs and scancels)."""
    from hpo._heartbeat import fail_and_retry
    from hpo.run import Worker
    from hpo.study import load_study_config

    study_file = write_study(
        tmp_path, storage=f"journal:{tmp_path}/s.journal", max_trials=3, config={"epochs": 1, "epoch_s": 0.0, "batches": 1}
    )
    worker = Worker(load_study_config(study_file), progress=False)
    dead = worker.study.ask()
    worker.objective.params_for(dead)
    assert fail_and_retry(worker.study, worker.study._storage.get_trial(dead._trial_id), "test", "killed", 3)
    summary = worker.run(n_trials=10)
    states = [t.state for t in worker.study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1, states
    assert summary.stopped == "max_trials"
