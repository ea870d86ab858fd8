"""What a trial writes to its run directory, and how durably (the journal overhead benchmark)."""

from __future__ import annotations

import json
import os
import sys
import typing as tp
from pathlib import Path

import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation

from hpo.run import Worker
from hpo.study import load_study_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fsync targets are read from /proc/self/fd")


def _instant_study(write_study: tp.Callable[..., Path], tmp_path: Path) -> Path:
    return write_study(
        storage=f"journal:{tmp_path / 'hpo.log'}",
        trainable="hpo.testing:instant",
        sampler={"name": "RandomSampler", "configs": {"seed": 2}},
        pruner="none",
        config={"epochs": 2},
        tune_params={
            "x": {"suggest": "float", "kwargs": {"low": -5, "high": 5}, "path": "x"},
            "y": {"suggest": "float", "kwargs": {"low": -5, "high": 5}, "path": "y"},
        },
    )


def test_trial_json_is_not_fsynced_and_result_json_is_durable_before_the_tell(write_study, tmp_path, monkeypatch):
    """trial.json skips both fsyncs (two per trial; the storage holds its params and collate
    recomputes it); result.json, the record, is fsynced with its folder before the trial's tell
    reaches the journal, so a finished trial in the storage always has it on disk."""
    worker = Worker(load_study_config(_instant_study(write_study, tmp_path)), progress=False)
    events: list[str] = []  # fsynced paths, and "tell <number>" when a trial's state is appended
    real_fsync, append_logs = os.fsync, JournalFileBackend.append_logs

    def fsync(fd: int) -> None:
        events.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def append(self: JournalFileBackend, logs: list[dict[str, tp.Any]]) -> None:
        tells = [f"tell {log['trial_id']}" for log in logs if log["op_code"] == JournalOperation.SET_TRIAL_STATE_VALUES]
        append_logs(self, logs)
        events.extend(tells)

    # Spies: the real fsync and append still run.
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(JournalFileBackend, "append_logs", append)
    assert worker.run(2).n_complete == 2
    trials = worker.study.get_trials()
    journal = str((tmp_path / "hpo.log").resolve())
    assert not [e for e in events if "trial.json" in e], events
    for t in trials:
        folder = str(Path(t.user_attrs["result"]["run_dir"]).resolve())
        record = [i for i, e in enumerate(events) if Path(e).parent == Path(folder) and ".result.json." in e]
        assert len(record) == 1, events
        i = record[0]
        assert events[i + 1] == folder  # the rename is committed by the folder's fsync
        assert events.index(f"tell {t._trial_id}") > i + 1
        assert json.loads((Path(folder) / "trial.json").read_text())["number"] == t.number
        assert json.loads((Path(folder) / "result.json").read_text())["state"] == "COMPLETE"
    # trial.json, result.json: 2 fsyncs per trial (was 4) on top of the journal's own appends
    assert len([e for e in events if not e.startswith("tell ")]) - events.count(journal) == 2 * len(trials)


def test_best_params_recomputes_the_config_when_a_crash_left_trial_json_empty(write_study, tmp_path):
    """An empty trial.json is what a machine crash can leave of an un-fsynced write."""
    from hpo.collate import best_params

    cfg = load_study_config(_instant_study(write_study, tmp_path))
    worker = Worker(cfg, progress=False)
    assert worker.run(2).n_complete == 2
    kept = best_params(cfg, worker.study)
    assert kept is not None and kept["config_source"].endswith("trial.json")
    (cfg.trial_dir(kept["trial"]) / "trial.json").write_text("")
    again = best_params(cfg, worker.study)
    assert again is not None and again["config_source"].startswith(f"recomputed from {cfg.path}")
    assert again["config"] == kept["config"] and again["seed"] == kept["seed"]
