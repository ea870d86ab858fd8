from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.objective import TrialHook
from hpo.run import Worker, resume_trial, run_study
from hpo.study import load_study_config, open_study

REPO = Path(__file__).resolve().parents[2]


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


@pytest.mark.slow
def test_hyperband_prunes_and_trials_record_everything(write_study):
    path = write_study(sampler={"name": "RandomSampler", "configs": {"seed": 0}})
    summary = run_study(path, 14, progress=False, collate=False)
    cfg = load_study_config(path)
    study = open_study(cfg)
    assert summary.n_trials == 14 and summary.numbers == list(range(14))
    assert TrialState.PRUNED in states(study), "Hyperband should prune some of 14 random trials"
    assert summary.n_pruned == states(study).count(TrialState.PRUNED) > 0
    done = study.get_trials(states=(TrialState.COMPLETE,))[0]
    assert len(done.intermediate_values) == 9
    assert done.user_attrs["result"]["epochs"] == 9 and done.user_attrs["result"]["stopped"] == "max_epochs"
    assert done.value == pytest.approx(done.user_attrs["result"]["metrics"]["val_loss"])
    assert done.user_attrs["result"]["seed"] == cfg.seed + done.number
    assert done.user_attrs["result"]["wall_time_s"] > 0 and done.user_attrs["result"]["provenance"]["host"]
    pruned = study.get_trials(states=(TrialState.PRUNED,))[0]
    assert pruned.user_attrs["result"]["stopped"] == "callback" and len(pruned.intermediate_values) < 9
    run_dir = cfg.trial_dir(done.number)
    trial_json = json.loads((run_dir / "trial.json").read_text())
    assert trial_json["params"] == done.params and trial_json["paths"] == {"lr": "lr", "momentum": "momentum"}
    result_json = json.loads((run_dir / "result.json").read_text())
    assert {"git", "packages", "host", "slurm", "gpu", "seed"} <= set(result_json["provenance"])
    assert result_json["state"] == "COMPLETE" and result_json["values"] == [done.value]
    assert (run_dir / "best.safetensors").is_file() and (run_dir / "metrics.json").is_file()
    assert study.metric_names == ["val_loss"]


def test_failed_trials_do_not_stop_the_study(write_study):
    path = write_study(
        sampler={"name": "RandomSampler", "configs": {"seed": 3}},
        tune_params={
            "fail": {"suggest": "cat", "kwargs": {"choices": [False, True]}, "path": "fail"},
            "lr": {"suggest": "float", "kwargs": {"low": 0.01, "high": 0.1}, "path": "lr"},
        },
        pruner="none",
    )
    summary = run_study(path, 8, progress=False, collate=False)
    study = open_study(load_study_config(path))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert summary.n_trials == 8 and len(study.trials) == 8
    assert 0 < len(failed) < 8 and summary.n_failed == len(failed)
    assert all(t.params["fail"] for t in failed)
    assert failed[0].user_attrs["error"] == "RuntimeError: linear_regression: failing at epoch 0 as configured"
    assert "Traceback" in failed[0].user_attrs["result"]["traceback"]


def test_resume_continues_numbering_on_journal_storage(write_study, tmp_path):
    path = write_study(storage=f"journal:{tmp_path / 'journal.log'}")
    first = run_study(path, 3, progress=False, collate=False)
    second = run_study(path, 3, progress=False, collate=False)
    assert first.numbers == [0, 1, 2] and second.numbers == [3, 4, 5]
    study = open_study(load_study_config(path))
    assert isinstance(study._storage, optuna.storages.JournalStorage) and len(study.trials) == 6


def test_storage_override_and_study_wide_cap(write_study, tmp_path):
    path = write_study(max_trials=5)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    a = run_study(path, 3, storage=url, progress=False, collate=False)
    b = run_study(path, 10, storage=url, progress=False, collate=False)
    assert (a.n_trials, b.n_trials, b.stopped) == (3, 2, "max_trials")
    assert not (tmp_path / "out" / "tiny" / "study.db").exists()


def test_multi_objective(write_study):
    path = write_study(
        directions=["minimize", "minimize"],
        metrics=["val_loss", "train_loss"],
        direction=None,
        metric=None,
        sampler={"name": "NSGAIISampler", "configs": {"population_size": 4}},
    )
    summary = run_study(path, 5, progress=False, collate=False)
    study = open_study(load_study_config(path))
    assert summary.n_complete == 5 and all(len(t.values) == 2 for t in study.trials)
    assert isinstance(summary.best_value, list) and summary.best_value


def test_quick_scan_limits_the_data(write_study):
    path = write_study(quick_scan=40)
    run_study(path, 1, progress=False, collate=False)
    cfg = load_study_config(path)
    assert cfg.quick_scan == 40 and "quick_scan" not in cfg.raw.get("config", {})
    from hpo.objective import Objective

    assert Objective(cfg).base_config["quick_scan"] == 40  # the trainable's own subset knob
    assert json.loads((cfg.trial_dir(0) / "result.json").read_text())["state"] == "COMPLETE"


class _Recorder(TrialHook):
    def __init__(self):
        self.events = []

    def on_trial_start(self, trial, run_dir, resume):
        self.events.append(("start", trial.number, run_dir.name, resume))

    def on_epoch(self, trial, epoch, metrics):
        self.events.append(("epoch", trial.number, epoch))
        return {"checkpoint", "stop"} if epoch == 2 else None

    def on_trial_end(self, trial, outcome):
        self.events.append(("end", trial.number, outcome.state.name))


def test_seams_hook_stop_and_same_trial_resume(write_study):
    """A hook can stop a trial with a checkpoint; leaving it RUNNING, a trial source resumes the
    same trial (same number) from its checkpoint, as a requeued Slurm job does."""
    cfg = load_study_config(write_study(pruner="none"))
    recorder = _Recorder()
    worker = Worker(cfg, hooks=[recorder], progress=False)
    worker.leave_running_on_exit = True
    trial = worker.study.ask()

    class Preempted(BaseException):
        pass

    def preempt_after_stop(t, outcome):
        raise Preempted  # the job is being requeued: the trial must stay RUNNING

    recorder.on_trial_end = preempt_after_stop
    with pytest.raises(Preempted):
        worker.run_trial(trial)
    assert worker.study.trials[0].state == TrialState.RUNNING
    assert [e for e in recorder.events if e[0] == "epoch"] == [("epoch", 0, 0), ("epoch", 0, 1), ("epoch", 0, 2)]

    fresh = _Recorder()
    resumed_worker = Worker(
        cfg,
        hooks=[fresh],
        progress=False,
        trial_sources=[lambda w: (resume_trial(w.study, 0), True) if not w.study.trials[0].state.is_finished() else None],
    )
    fresh.on_epoch = lambda t, e, m: fresh.events.append(("epoch", t.number, e))
    summary = resumed_worker.run(1)
    assert summary.numbers == [0] and fresh.events[0] == ("start", 0, "0", True)
    assert [e[2] for e in fresh.events if e[0] == "epoch"] == list(range(3, 9))
    final = resumed_worker.study.trials[0]
    assert final.state == TrialState.COMPLETE and final.user_attrs["resumed"] == 1
    assert sorted(final.intermediate_values) == list(range(9))


@pytest.mark.slow
def test_two_concurrent_processes_share_one_study(write_study, tmp_path):
    path = write_study(config={"epochs": 9, "sleep_s": 0.02})
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "hpo.run", "--study", str(path), "--n-trials", "6", "--no-progress", "--no-collate"]
    procs = [
        subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "this worker ran 6 trial(s)" in out
    study = open_study(load_study_config(path))
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(12)) and len(set(numbers)) == 12
    assert len({t.user_attrs["result"]["worker"] for t in study.trials}) == 2
    assert "database is locked" not in "".join(err for _, err in outs)


@pytest.mark.parametrize("leave_running", [True, False])
def test_worker_interrupt_checkpoints_mid_trial_and_the_resume_matches(write_study, tmp_path, leave_running):
    """``Worker.interrupt`` reaches the trainable (interface A): it stops within its epoch, the trial
    stays RUNNING for a resume (or fails, without ``leave_running_on_exit``) and no new trial starts."""
    import threading
    import time

    from hpo.testing import linear_regression

    cfg = load_study_config(write_study(pruner="none", config={"epochs": 6, "sleep_s": 0.2}))
    worker = Worker(cfg, progress=False, leave_running_on_exit=leave_running)
    out = []
    thread = threading.Thread(target=lambda: out.append(worker.run(3)))
    thread.start()
    deadline = time.monotonic() + 60
    while len(worker.study.trials[0].intermediate_values if worker.study.trials else []) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.interrupt.set()
    thread.join(60)
    (summary,) = out
    assert summary.stopped == "interrupted" and summary.numbers == [0] and len(worker.study.trials) == 1
    trial = worker.study.trials[0]
    if not leave_running:
        assert trial.state == TrialState.FAIL and trial.user_attrs["error"] == "interrupted: TrialInterrupted"
        return
    assert trial.state == TrialState.RUNNING and len(trial.intermediate_values) < 6
    again = Worker(
        cfg,
        progress=False,
        trial_sources=[lambda w: (resume_trial(w.study, 0), True) if w.study.trials[0].state == TrialState.RUNNING else None],
    )
    assert again.run(1).numbers == [0]
    final = again.study.trials[0]
    plain = linear_regression(
        {**cfg.base_config, **final.params, "sleep_s": 0.0, "seed": cfg.seed, "run_dir": str(tmp_path / "plain")}
    )
    history = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert final.state == TrialState.COMPLETE and final.value == plain["metrics"]["val_loss"]
    assert [final.intermediate_values[e] for e in range(6)] == [h["val_loss"] for h in history]


def _count_appends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``JournalFileBackend.append_logs`` calls (each one file lock and one fsync)."""
    from optuna.storages.journal import JournalFileBackend

    calls: list[int] = []
    append_logs = JournalFileBackend.append_logs

    def counted(self: JournalFileBackend, logs: list[dict[str, object]]) -> None:
        calls.append(len(logs))
        append_logs(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", counted)
    return calls


def test_journal_appends_per_trial_match_raw_optuna(write_study, tmp_path, monkeypatch):
    """hpo.run's trial loop appends to the journal as often as raw Optuna's (issue 16): the
    ``result`` user attr goes out with the trial's ``tell`` in one append."""
    from hpo.testing import instant

    n = 4
    path = write_study(
        storage=f"journal:{tmp_path / 'hpo.log'}",
        trainable="hpo.testing:instant",
        sampler={"name": "RandomSampler", "configs": {"seed": 1}},
        pruner="none",
        config={"epochs": 3},
        tune_params={
            "x": {"suggest": "float", "kwargs": {"low": -5, "high": 5}, "path": "x"},
            "y": {"suggest": "float", "kwargs": {"low": -5, "high": 5}, "path": "y"},
        },
    )
    worker = Worker(load_study_config(path), progress=False)  # creates the study: not counted
    calls = _count_appends(monkeypatch)
    summary = worker.run(n)
    hpo_appends = len(calls)
    assert summary.n_complete == n and sum(calls) - hpo_appends == n  # one batched pair per trial
    trials = worker.study.get_trials()
    assert all(t.user_attrs["result"]["worker"] == worker.worker for t in trials)

    raw = optuna.create_study(
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "raw.log"))),
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    calls.clear()

    def objective(trial: optuna.Trial) -> float:
        config = {"x": trial.suggest_float("x", -5, 5), "y": trial.suggest_float("y", -5, 5), "epochs": 3}
        result = instant(config, lambda epoch, metrics: trial.report(metrics["val_loss"], epoch))
        return float(result["metrics"]["val_loss"])

    raw.optimize(objective, n_trials=n)
    assert hpo_appends == len(calls) == n * (1 + 2 + 3 + 1)  # create, 2 params, 3 epochs, tell


def test_failed_trial_error_attr_is_written_with_its_tell(write_study, tmp_path, monkeypatch):
    path = write_study(
        storage=f"journal:{tmp_path / 'hpo.log'}",
        sampler={"name": "RandomSampler", "configs": {"seed": 3}},
        tune_params={"fail": {"suggest": "cat", "kwargs": {"choices": [True]}, "path": "fail"}},
        pruner="none",
    )
    worker = Worker(load_study_config(path), progress=False)
    calls = _count_appends(monkeypatch)
    assert worker.run(1).n_failed == 1
    assert calls[-1] == 3  # result, error, state in one append
    (trial,) = worker.study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["error"].startswith("RuntimeError: linear_regression")
