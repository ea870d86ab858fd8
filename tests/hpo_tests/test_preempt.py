"""Preemption: checkpoint on SIGUSR2/SIGTERM, leave the trial suspended, resume the same trial."""

from __future__ import annotations

import json
import os
import signal
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo._heartbeat import HEARTBEAT_KEY, REAPED_KEY, SUSPENDED_KEY, HeartbeatSettings
from hpo._preempt import PREEMPTED_EXIT_CODE, RESUMES_KEY, PreemptionHandler, TrialPreempted, claim_own_trials
from hpo.objective import trial_seed
from hpo.study import make_storage
from slurm.testing import counter_trainable
from tests.slurm_tests._cluster import hpo_run, load, trial_dir, trials_or_empty, wait_for, write_study


def test_handler_turns_signals_into_checkpoint_and_stop():
    before = signal.getsignal(signal.SIGUSR2)
    with PreemptionHandler() as handler:
        wrapped = handler.wrap(lambda epoch, metrics: {"stop"} if epoch > 5 else None)
        assert wrapped(0, {}) is None and wrapped(6, {}) == {"stop"}
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        assert handler.requested and handler.requeue and handler.received == ["SIGUSR2"]
        assert wrapped(1, {}) == {"checkpoint", "stop"}
        with pytest.raises(TrialPreempted) as e:
            handler.raise_if_requested()
        assert e.value.code == PREEMPTED_EXIT_CODE
    assert signal.getsignal(signal.SIGUSR2) == before


def test_sigterm_alone_does_not_ask_for_a_requeue():
    with PreemptionHandler() as handler:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert handler.requested and not handler.requeue


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


def _wait_epochs(study_file, n):
    return wait_for(lambda: trials_or_empty(study_file) and len(
        (trial_dir(study_file, 0) / "epochs.jsonl").read_text().splitlines()
        if (trial_dir(study_file, 0) / "epochs.jsonl").exists() else []) >= n, 90, f"{n} epochs", poll_s=0.2)


@pytest.mark.slow
def test_stopped_worker_with_a_stable_key_resumes_the_same_trial(tmp_path):
    """Outside Slurm, HPO_WORKER_KEY promises a restart with the same key (as a requeue does)."""
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db", config={"epochs": 6, "epoch_s": 0.4})
    env = {"HPO_PREEMPTION": "1", "HPO_WORKER_KEY": "laptop-1"}
    proc = hpo_run(study_file, 1, env=env)
    _wait_epochs(study_file, 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == PREEMPTED_EXIT_CODE
    (trial,) = load(study_file).get_trials()
    assert trial.state == TrialState.RUNNING and trial.system_attrs[SUSPENDED_KEY] is not None
    assert hpo_run(study_file, 1, env=env).wait(timeout=120) == 0
    (trial,) = load(study_file).get_trials()
    assert trial.state == TrialState.COMPLETE and trial.number == 0 and sorted(trial.intermediate_values) == list(range(6))
    starts = [json.loads(s) for s in (trial_dir(study_file, 0) / "workers.jsonl").read_text().splitlines()]
    assert [s["resume"] for s in starts] == [False, True]
    raw = yaml.safe_load(study_file.read_text())
    ref = counter_trainable({**raw["config"], **trial.params, "seed": trial_seed(0, 0), "run_dir": str(tmp_path / "ref")})
    assert trial.value == pytest.approx(ref["metrics"]["val_loss"], abs=1e-12)


@pytest.mark.slow
def test_stopped_worker_without_a_stable_key_retries_its_trial(tmp_path):
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/s.journal", config={"epochs": 40, "epoch_s": 0.3})
    proc = hpo_run(study_file, 1, env={"HPO_PREEMPTION": "1"})
    _wait_epochs(study_file, 1)
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=60) == PREEMPTED_EXIT_CODE
    first, retry = load(study_file).get_trials()
    assert first.state == TrialState.FAIL and "nobody will resume it" in first.system_attrs[REAPED_KEY]["reason"]
    assert retry.state == TrialState.WAITING and retry.system_attrs["fixed_params"] == first.params
