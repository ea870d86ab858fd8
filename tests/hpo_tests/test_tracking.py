"""Experiment tracking (``tracking:`` in a study file), read back through each library's own reader."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.errors import StudyConfigError
from hpo.run import run_study
from hpo.study import load_study_config

REPO = Path(__file__).resolve().parents[2]

SPACE = {
    "fail": {"suggest": "cat", "kwargs": {"choices": [False, True]}, "path": "fail"},
    "lr": {"suggest": "float", "kwargs": {"low": 0.001, "high": 0.3, "log": True}, "path": "lr"},
    "momentum": {"suggest": "float", "kwargs": {"low": 0.0, "high": 0.9}, "path": "momentum"},
}
#: One failed, one complete and one pruned trial (val_loss stays ~10 with lr 0.001: above the threshold).
ENQUEUE = [
    {"fail": True, "lr": 0.01, "momentum": 0.0},
    {"fail": False, "lr": 0.2, "momentum": 0.5},
    {"fail": False, "lr": 0.001, "momentum": 0.0},
]
STATES = {0: "FAIL", 1: "COMPLETE", 2: "PRUNED"}


def three_trials(write_study, tracking):
    path = write_study(
        tracking=tracking,
        tune_params=SPACE,
        enqueue=ENQUEUE,
        config={"epochs": 4, "plots": True},
        pruner={"name": "ThresholdPruner", "configs": {"upper": 5.0, "n_warmup_steps": 2}},
    )
    run_study(path, 3, progress=False, collate=False)
    return load_study_config(path)


@pytest.mark.slow  # MLflow creates its tables (migrations) in ~10 s
def test_mlflow_runs_per_trial_in_a_sqlite_store(write_study):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'fspnet[mlflow]')")
    from mlflow import MlflowClient

    cfg = three_trials(write_study, {"mlflow": {}})
    client = MlflowClient(tracking_uri=f"sqlite:///{(cfg.study_dir / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("tiny")
    runs = {int(r.data.tags["hpo.trial"]): r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == [0, 1, 2]
    assert {n: r.data.tags["optuna.state"] for n, r in runs.items()} == STATES
    assert [runs[n].info.status for n in range(3)] == ["FAILED", "FINISHED", "KILLED"]
    assert "failing at epoch 0" in runs[0].data.tags["optuna.error"]
    done = runs[1]
    assert done.info.run_name == "trial-1" and done.data.params == {"fail": "False", "lr": "0.2", "momentum": "0.5"}
    assert {"hpo.worker", "hpo.git_commit", "hpo.study", "hpo.run_dir"} <= set(done.data.tags)
    history = client.get_metric_history(done.info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1, 2, 3]  # every epoch, not only the final value
    assert [m.value for m in history][-1] == pytest.approx(
        json.loads((cfg.trial_dir(1) / "metrics.json").read_text())[-1]["val_loss"]
    )
    assert {a.path for a in client.list_artifacts(done.info.run_id, "plots")} == {"plots/loss_curve.png"}
    assert {a.path for a in client.list_artifacts(done.info.run_id, "weights")} == {"weights/best.safetensors"}
    assert len(client.get_metric_history(runs[2].info.run_id, "val_loss")) == 3  # pruned at its third epoch


@pytest.mark.slow
def test_four_workers_share_one_mlflow_store_without_losing_a_run(write_study):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'fspnet[mlflow]')")
    from mlflow import MlflowClient

    path = write_study(tracking={"mlflow": True}, config={"epochs": 3}, pruner="none")
    cmd = [sys.executable, "-m", "hpo.run", "--study", str(path), "--n-trials", "2", "--no-progress", "--no-collate"]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**__import__("os").environ, "HPO_WORKER_KEY": f"w{i}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    assert not any("tracking.mlflow" in e for e in errs), errs  # no tracker gave up
    cfg = load_study_config(path)
    client = MlflowClient(tracking_uri=f"sqlite:///{(cfg.study_dir / 'mlflow.db').resolve()}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(int(r.data.tags["hpo.trial"]) for r in runs) == list(range(8))
    assert {r.data.tags["hpo.worker"] for r in runs} == {"w0", "w1", "w2", "w3"}
    assert all(r.info.status == "FINISHED" and len(client.get_metric_history(r.info.run_id, "val_loss")) == 3 for r in runs)


def test_tensorboard_folder_per_trial(write_study):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'fspnet[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = three_trials(write_study, {"tensorboard": {}})
    assert sorted(p.name for p in (cfg.study_dir / "tensorboard").iterdir()) == ["trial-0", "trial-1", "trial-2"]
    acc = EventAccumulator(str(cfg.study_dir / "tensorboard" / "trial-1"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("val_loss")] == [0, 1, 2, 3]
    assert acc.Scalars("objective/0")[0].value == pytest.approx(acc.Scalars("val_loss")[1].value, rel=1e-6)  # best epoch
    texts = {
        tag: acc.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in ("state/text_summary", "params/text_summary")
    }
    assert texts["state/text_summary"] == "COMPLETE" and "| lr | 0.2 |" in texts["params/text_summary"]
    assert acc.Images("plots/loss_curve")[0].width > 0
    pruned = EventAccumulator(str(cfg.study_dir / "tensorboard" / "trial-2"), size_guidance={"tensors": 0})
    pruned.Reload()
    assert pruned.Tensors("state/text_summary")[0].tensor_proto.string_val[0].decode() == "PRUNED"


def _wandb_records(path: Path) -> list:
    """The records of a W&B ``.wandb`` file: a 7-byte W&B header, then LevelDB-log blocks of
    protobuf ``Record`` messages (W&B's own schema, ``wandb.proto.wandb_internal_pb2``)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, chunk, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block trailer too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(chunk)
            out.append(rec)
            chunk = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_runs_grouped_by_study(write_study):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'fspnet[wandb]')")
    cfg = three_trials(write_study, {"wandb": {"mode": "offline"}})
    files = sorted((cfg.study_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 3
    runs = {}
    for f in files:
        recs = _wandb_records(f)
        run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
        history = [
            {_key(i): json.loads(i.value_json) for i in r.history.item} for r in recs if r.WhichOneof("record_type") == "history"
        ]
        summary = {
            _key(i): json.loads(i.value_json) for r in recs if r.WhichOneof("record_type") == "summary" for i in r.summary.update
        }
        exit_code = [r.exit.exit_code for r in recs if r.WhichOneof("record_type") == "exit"]
        runs[run.display_name] = (run, history, summary, exit_code)
    assert sorted(runs) == ["trial-0", "trial-1", "trial-2"]
    run, history, summary, exit_code = runs["trial-1"]
    assert run.run_group == "tiny" and run.project == "tiny" and run.job_type == "trial"
    assert [h["_step"] for h in history if "val_loss" in h] == [0, 1, 2, 3]
    assert summary["optuna_state"] == "COMPLETE" and exit_code == [0]
    assert any(h.get("plots/loss_curve/_type") == "image-file" for h in history)
    assert runs["trial-2"][2]["optuna_state"] == "PRUNED" and runs["trial-0"][3] == [1]


def test_tracking_section_errors(write_study, monkeypatch):
    with pytest.raises(StudyConfigError, match=r"tracking\.neptune: unknown tracker; choose one of mlflow, tensorboard, wandb"):
        load_study_config(write_study(tracking={"neptune": {}}))
    with pytest.raises(StudyConfigError, match=r"tracking\.tensorboard\.logdir: unknown key; valid keys are log_dir"):
        load_study_config(write_study(tracking={"tensorboard": {"logdir": "x"}}))
    # option values are checked against each tracker's Options schema (runtools.schema), every one at once
    with pytest.raises(StudyConfigError) as info:
        load_study_config(write_study(tracking={"wandb": {"mode": "cloud", "project": 7}, "tensorboard": {"log_dir": ["a"]}}))
    for line in (
        "tracking.wandb.mode: unknown 'cloud'; choose one of offline, online, disabled",
        "tracking.wandb.project: expected str, but got int 7",
        "tracking.tensorboard.log_dir: expected str, but got list ['a']",
    ):
        assert line in str(info.value)
    import hpo.tracking._base as base

    real = base.importlib.util.find_spec
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(
        StudyConfigError, match=r"tracking\.mlflow: the mlflow package is not installed; pip install 'fspnet\[mlflow\]'"
    ):
        load_study_config(write_study(tracking={"mlflow": {}}))
    assert load_study_config(write_study(tracking={"mlflow": False})).features.tracking is None


@pytest.mark.parametrize("name", ["mlflow", "tensorboard", "wandb"])
def test_tracker_contract(name, tmp_path):
    from hpo.testing._tracking import check_tracker
    from hpo.tracking._base import TRACKERS, _tracker_class

    cls = _tracker_class(name)
    pytest.importorskip(cls.module, reason=f"{cls.module} not installed (pip install 'fspnet[{cls.extra}]')")
    assert set(TRACKERS) == {"mlflow", "tensorboard", "wandb"}
    options = {"mode": "offline"} if name == "wandb" else {}
    check_tracker(lambda study_dir: cls(study_dir, options), tmp_path)
    if name == "mlflow":  # the resumed trial 0 continued its run
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'study' / 'mlflow.db').resolve()}")
        runs = client.search_runs([client.get_experiment_by_name("contract").experiment_id])
        assert sorted(r.info.run_name for r in runs) == ["trial-0", "trial-1", "trial-2"]
        first = next(r for r in runs if r.info.run_name == "trial-0")
        assert len(client.get_metric_history(first.info.run_id, "val_loss")) == 6 and first.info.status == "FINISHED"
