"""Heartbeats and the reaper on every storage: dead trials are failed once and retried."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from hpo._heartbeat import (
    HEARTBEAT_KEY,
    REAPED_KEY,
    SUSPENDED_KEY,
    Heartbeat,
    HeartbeatSettings,
    original_trial,
    owner_of,
    reap_stale_trials,
    warn_if_network_filesystem,
)
from hpo.study import make_storage
from tests.slurm_tests._cluster import PG_MISSING, hpo_run, load, pg_url, trial_dir, unavailable, wait_for, write_study

_optuna_retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
SETTINGS = HeartbeatSettings(interval_s=1.0, grace_s=3.0, suspend_grace_s=30.0, max_retries=2)
FAST = {"HPO_HEARTBEAT_S": "1", "HPO_GRACE_S": "3"}


def _storages(tmp_path) -> dict[str, str]:
    out = {"sqlite": f"sqlite:///{tmp_path}/s.db", "journal": f"journal:{tmp_path}/s.journal"}
    url = pg_url()
    if url is not None:
        out["postgres"] = url
    return out


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    urls = _storages(tmp_path)
    if request.param not in urls:
        unavailable(PG_MISSING)
    return urls[request.param]


def _study(url: str, name: str | None = None) -> optuna.Study:
    name = name or f"hb{os.getpid()}_{time.time_ns()}"
    return optuna.create_study(study_name=name, storage=make_storage(url), sampler=optuna.samplers.RandomSampler(0))


def _running(study: optuna.Study, beat_age_s: float | None, suspended_age_s: float | None = None) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("x", -1, 1)
    trial.suggest_int("n", 1, 8)
    now = time.time()
    if beat_age_s is not None:
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_KEY, {"t": now - beat_age_s, "worker": "w0"})
    if suspended_age_s is not None:
        study._storage.set_trial_system_attr(trial._trial_id, SUSPENDED_KEY, now - suspended_age_s)
    return trial


def test_reaper_fails_only_dead_trials_and_retries_their_params(storage_url):
    study = _study(storage_url)
    dead = _running(study, beat_age_s=10)
    alive = _running(study, beat_age_s=0.5)
    plain = _running(study, beat_age_s=None)  # plain Optuna, no heartbeat: never touched
    waiting = _running(study, beat_age_s=100, suspended_age_s=10)  # requeued job on its way back
    gone = _running(study, beat_age_s=100, suspended_age_s=60)  # suspended too long

    assert reap_stale_trials(study, SETTINGS, reaper="me") == [dead.number, gone.number]
    trials = study.get_trials()
    states = {t.number: t.state for t in trials}
    assert states[alive.number] == states[plain.number] == states[waiting.number] == TrialState.RUNNING
    failed = trials[dead.number]
    assert failed.state == TrialState.FAIL and failed.system_attrs[REAPED_KEY]["by"] == "me"
    assert re.fullmatch(r"worker died: heartbeat stale for 1\d s", failed.user_attrs["error"])
    assert "suspended stale" in trials[gone.number].system_attrs[REAPED_KEY]["reason"]
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert [r.user_attrs["retry_of"] for r in retries] == [dead.number, gone.number]
    assert retries[0].params == failed.params and retries[0].distributions == failed.distributions
    # recorded under the names Optuna's own retry callback uses, so its helpers understand them
    assert _optuna_retry.retried_trial_number(retries[0]) == dead.number
    assert _optuna_retry.retry_history(retries[1]) == [gone.number]
    assert HEARTBEAT_KEY not in retries[0].system_attrs and "error" not in retries[0].user_attrs
    assert reap_stale_trials(study, SETTINGS) == []  # idempotent
    # the retry runs with the same parameters through the ordinary ask()
    retry = study.ask()
    assert retry.suggest_float("x", -1, 1) == failed.params["x"] and retry.suggest_int("n", 1, 8) == failed.params["n"]


def test_retries_stop_after_max_retries(tmp_path):
    study = _study(f"sqlite:///{tmp_path}/s.db")
    for _ in range(SETTINGS.max_retries + 1):
        trial = study.ask()  # the retry of the previous one, if any
        trial.suggest_float("x", -1, 1)
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_KEY, {"t": 0.0, "worker": "w"})
        assert reap_stale_trials(study, SETTINGS) == [trial.number]
    assert study.get_trials(states=(TrialState.WAITING,)) == []
    assert len({t.params["x"] for t in study.get_trials()}) == 1
    chain = study.get_trials()
    assert [t.system_attrs.get("retry_history", []) for t in chain] == [[], [0], [0, 1]]
    assert {original_trial(t) for t in chain} == {0}  # every retry trains with trial 0's seed


def _reap_in_child(url: str, name: str, barrier, queue) -> None:
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    barrier.wait()
    queue.put(reap_stale_trials(study, SETTINGS, reaper=f"child{os.getpid()}"))


def test_only_one_reaper_wins_each_dead_trial(storage_url):
    study = _study(storage_url)
    dead = [_running(study, beat_age_s=60).number for _ in range(6)]
    ctx = multiprocessing.get_context("fork")  # children share the imports: cheap to start
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_reap_in_child, args=(storage_url, study.study_name, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    reaped = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(sum(reaped, [])) == dead  # every dead trial reaped exactly once in all
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(r.user_attrs["retry_of"] for r in retries) == dead
    assert len(study.get_trials()) == 2 * len(dead)  # counts add up


def test_heartbeat_thread_beats_and_stops_when_the_trial_is_gone(tmp_path):
    study = _study(f"journal:{tmp_path}/s.journal")
    trial = study.ask()
    with Heartbeat(study._storage, trial._trial_id, "k", interval_s=0.2):
        first = study._storage.get_trial(trial._trial_id).system_attrs[HEARTBEAT_KEY]["t"]
        time.sleep(0.7)
        last = study._storage.get_trial(trial._trial_id).system_attrs[HEARTBEAT_KEY]
    assert last["t"] > first and last["worker"] == "k"
    beat = Heartbeat(study._storage, trial._trial_id, "k", interval_s=0.1).start()
    study.tell(trial, 1.0)
    beat._thread.join(timeout=5)
    assert not beat._thread.is_alive()


def test_collate_and_report_maintenance_reap_without_any_worker(tmp_path):
    from hpo._heartbeat import reap_dead_trials

    study = _study(f"journal:{tmp_path}/s.journal")
    dead = _running(study, beat_age_s=1e6)
    reap_dead_trials(study)
    assert study.get_trials()[dead.number].state == TrialState.FAIL


def test_sqlite_on_local_disk_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_network_filesystem(tmp_path / "study.db") is False


@pytest.mark.slow
def test_sigkilled_worker_trial_is_retried_by_a_live_worker(tmp_path):
    study_file = write_study(tmp_path, storage=f"journal:{tmp_path}/s.journal", config={"epochs": 60, "epoch_s": 0.5})
    victim = hpo_run(study_file, 1, env=FAST)
    try:
        wait_for(lambda: (trial_dir(study_file, 0) / "epochs.jsonl").exists(), 60, "the first epoch")
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    time.sleep(3.5)  # its heartbeat goes stale
    short = write_study(
        tmp_path, storage=f"journal:{tmp_path}/s.journal", name=load(study_file).study_name, config={"epochs": 2, "epoch_s": 0.05}
    )
    assert hpo_run(short, 1, env=FAST).wait(timeout=120) == 0
    first, retry = load(study_file).get_trials()
    assert first.state == TrialState.FAIL and owner_of(first).startswith("local:")
    assert retry.state == TrialState.COMPLETE and retry.params == first.params and retry.user_attrs["retry_of"] == 0
    started = [json.loads(line) for line in (trial_dir(study_file, 1) / "workers.jsonl").read_text().splitlines()]
    assert [s["resume"] for s in started] == [False]  # a retry starts afresh in its own run dir


@pytest.mark.slow
def test_retry_runs_even_when_max_trials_is_reached(tmp_path):
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db", max_trials=1)
    assert hpo_run(study_file, 0).wait(timeout=120) == 0  # creates the study
    study = load(study_file)
    trial = study.ask()
    trial.suggest_float("x", -1.0, 1.0)
    trial.suggest_float("y", -1.0, 1.0)
    study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_KEY, {"t": 0.0, "worker": "gone"})
    assert hpo_run(study_file, 5, env=FAST).wait(timeout=120) == 0
    first, retry = load(study_file).get_trials()
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE and retry.params == first.params
