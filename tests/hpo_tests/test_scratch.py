"""Node-local scratch (``hpo._scratch``): the study-file section, dataset staging shared by the
workers of a node, copy-back when a trial ends, and checkpoint-first resume on another node."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import typing as tp
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo._scratch import CHECKPOINT_MANIFEST, ScratchSection, TrialScratch, resolve_scratch_root, stage_path
from hpo.errors import HpoError, StudyConfigError
from hpo.objective import Objective, TrialHook, TrialInterrupted
from hpo.study import load_study_config
from hpo.testing import linear_regression

#: The linear-regression trainable's checkpoint; kept out of copy_back so that it never reaches
#: the shared folder unless an interruption puts it there.
COPY_BACK = ["metrics.json", "*.safetensors"]


def _study(write_study: tp.Callable[..., Path], scratch: Path, **changes: tp.Any) -> Path:
    return write_study(scratch={"dir": str(scratch), "copy_back": COPY_BACK}, **changes)


def _trial(cfg: tp.Any) -> optuna.Trial:
    study = optuna.create_study(study_name=cfg.name, direction="minimize", sampler=cfg.sampler_for(0), pruner=cfg.make_pruner())
    return study.ask()


# ----------------------------------------------------------------------------- the section


def test_scratch_is_off_by_default_and_on_with_set(write_study):
    path = write_study()
    assert not load_study_config(path).scratch.enabled
    cfg = load_study_config(path, overrides=["scratch.dir=auto"])
    assert cfg.scratch.enabled and cfg.scratch.dir == "auto" and "*.safetensors" in cfg.scratch.copy_back


def test_every_problem_of_the_section_is_reported_with_its_key(write_study):
    path = write_study(scratch={"dir": 5, "stage": ["lr", "lr", ""], "copy_back": ["/abs/*.png", "../x"], "where": 1})
    with pytest.raises(StudyConfigError) as e:
        load_study_config(path)
    msg = str(e.value)
    assert "scratch.where: unknown key; valid keys are dir, stage, copy_back" in msg
    assert "scratch.dir: expected str, but got int 5" in msg
    assert "scratch.stage: must be dotted keys of the trainable config" in msg
    assert "scratch.copy_back: must be glob patterns relative to the trial folder" in msg


def test_a_stage_key_must_be_a_key_of_the_trainable_config(write_study, tmp_path):
    path = write_study(scratch={"dir": str(tmp_path / "s"), "stage": ["lr", "data.path"]})
    with pytest.raises(StudyConfigError, match=r"scratch\.stage\.1: 'data\.path' is not a key of the trainable config"):
        load_study_config(path)


def test_auto_takes_slurm_tmpdir_then_tmpdir_then_the_system_temp(monkeypatch, tmp_path):
    import tempfile

    assert resolve_scratch_root("auto", {"SLURM_TMPDIR": "/a", "TMPDIR": "/b"}) == Path("/a")
    assert resolve_scratch_root("auto", {"SLURM_TMPDIR": "", "TMPDIR": "/b"}) == Path("/b")
    assert resolve_scratch_root("auto", {}) == Path(tempfile.gettempdir())
    monkeypatch.setenv("HPO_TEST_SCRATCH", str(tmp_path))
    assert resolve_scratch_root("$HPO_TEST_SCRATCH/x") == tmp_path / "x"
    monkeypatch.delenv("HPO_TEST_SCRATCH")
    with pytest.raises(HpoError, match=r"scratch\.dir: '\$HPO_TEST_SCRATCH/x' names an environment variable that is not set"):
        resolve_scratch_root("$HPO_TEST_SCRATCH/x")


def test_scratch_at_the_shared_folder_is_refused(tmp_path):
    shared = tmp_path / "out" / "s" / "trials" / "0"
    with pytest.raises(HpoError, match="choose a node-local folder other than output_dir"):
        TrialScratch(ScratchSection(dir=str(tmp_path / "out")), "s", shared)


# ----------------------------------------------------------------------------- staging


def _stage_in_process(src: str, data_dir: str, barrier: tp.Any, out: tp.Any) -> None:
    barrier.wait()
    copy, copied = stage_path(src, Path(data_dir))
    out.put((str(copy), copied))


def test_two_workers_of_a_node_share_one_staged_copy(tmp_path):
    src = tmp_path / "shared" / "data.h5"
    src.parent.mkdir()
    src.write_bytes(os.urandom(8 << 20))
    data_dir = tmp_path / "scratch" / "data"
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_stage_in_process, args=(str(src), str(data_dir), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len({c for c, _ in results}) == 1
    assert sorted(copied for _, copied in results) == [False, True]  # one copy, the other worker reused it
    copy = Path(results[0][0])
    assert copy.read_bytes() == src.read_bytes() and copy.parent == data_dir
    assert [p.name for p in data_dir.iterdir() if not p.name.startswith(".")] == [copy.name]  # no temp left
    assert stage_path(src, data_dir) == (copy, False)  # same size and mtime: reused
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    assert stage_path(src, data_dir) == (copy, True)  # the source changed: copied again


def test_a_staged_folder_and_a_missing_source(tmp_path):
    src = tmp_path / "run"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.bin").write_bytes(b"abc")
    copy, copied = stage_path(src, tmp_path / "data")
    assert copied and (copy / "sub" / "w.bin").read_bytes() == b"abc"
    assert stage_path(src, tmp_path / "data") == (copy, False)
    with pytest.raises(HpoError, match="nothing to stage"):
        stage_path(tmp_path / "missing.h5", tmp_path / "data")


def test_a_trial_reads_the_staged_copy_and_trial_json_keeps_the_shared_path(write_study, tmp_path):
    src = tmp_path / "shared" / "train.npz"
    src.parent.mkdir()
    src.write_bytes(b"0123456789")
    path = write_study(
        trainable="tests.hpo_tests.test_scratch:data_trainable",
        config={"data": {"path": str(src)}},
        tune_params={"lr": {"state": True, "suggest": "float", "kwargs": {"low": 0.1, "high": 0.2}, "path": "lr"}},
        scratch={"dir": str(tmp_path / "node"), "stage": ["data.path"]},
    )
    cfg = load_study_config(path)
    outcome = Objective(cfg).run(_trial(cfg))
    assert outcome.state == TrialState.COMPLETE, outcome.error
    shared = cfg.trial_dir(0)
    seen = json.loads((shared / "seen.json").read_text())
    node = tmp_path / "node" / cfg.name
    assert Path(seen["data"]).parent == node / "data" and seen["bytes"] == 10
    assert Path(seen["run_dir"]) == node / "trials" / "0"
    record = json.loads((shared / "trial.json").read_text())
    assert record["config"]["data"]["path"] == str(src) and record["config"]["run_dir"] == str(shared)
    assert record["scratch"]["staged"]["data.path"] == {"shared": str(src), "copy": seen["data"]}
    assert not (node / "trials" / "0").exists()


def data_trainable(config: dict[str, tp.Any], callback: tp.Any = None) -> dict[str, tp.Any]:
    """Reads ``data.path`` and records where it read it from (a trainable for the test above)."""
    from runtools.io import write_json

    run_dir = Path(config["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    data = Path(config["data"]["path"])
    write_json(run_dir / "seen.json", {"data": str(data), "bytes": len(data.read_bytes()), "run_dir": str(run_dir)})
    return {"metrics": {"val_loss": float(config["lr"])}, "epochs": 1}


# ----------------------------------------------------------------------------- copy-back


class _SharedWatch(TrialHook):
    """Records, after each epoch and when training ends, which files the shared folder holds."""

    def __init__(self, shared: Path, interrupt_at: int | None = None, interrupt: threading.Event | None = None) -> None:
        self.shared, self.interrupt_at, self.interrupt = shared, interrupt_at, interrupt
        self.during: set[str] = set()
        self.at_train_end: set[str] = set()

    def on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> None:
        self.during |= {p.name for p in self.shared.iterdir()}
        if self.interrupt is not None and epoch == self.interrupt_at:
            self.interrupt.set()
        return None

    def on_train_end(self, trial: optuna.Trial, result: tp.Any) -> None:
        self.at_train_end = {p.name for p in self.shared.iterdir()}


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, TrialState.COMPLETE),
        ({"pruner": {"name": "ThresholdPruner", "configs": {"upper": 1e-9}}}, TrialState.PRUNED),
        ({"config": {"epochs": 9, "fail": True, "fail_at_epoch": 3}}, TrialState.FAIL),
    ],
)
def test_copy_back_when_a_trial_ends(write_study, tmp_path, changes, state):
    cfg = load_study_config(_study(write_study, tmp_path / "node", **changes))
    shared = cfg.trial_dir(0)
    watch = _SharedWatch(shared)
    outcome = Objective(cfg, hooks=[watch]).run(_trial(cfg))
    assert outcome.state == state
    files = {p.name for p in shared.iterdir()}
    assert "checkpoint.json" not in watch.during | files  # rewritten every epoch, on the node only
    assert {"trial.json", "result.json", "best.safetensors"} <= files
    if state != TrialState.FAIL:  # a failing trainable writes no metrics file
        assert json.loads((shared / "metrics.json").read_text())
    assert not (tmp_path / "node" / cfg.name / "trials" / "0").exists()  # scratch removed
    assert not list(shared.glob(".*tmp"))


def test_without_scratch_the_checkpoint_goes_to_the_shared_folder(write_study):
    cfg = load_study_config(write_study())
    Objective(cfg).run(_trial(cfg))
    assert (cfg.trial_dir(0) / "checkpoint.json").is_file()


# ----------------------------------------------------------------------------- interruption


def test_an_interrupted_trial_is_on_shared_storage_before_the_hooks_and_resumes_on_another_node(write_study, tmp_path):
    """Interrupt at epoch 3: the whole scratch folder is copied to the shared one before any
    ``on_train_end`` hook (slurm's requeues the job there), the scratch folder goes, and the
    trial resumes from the shared copy on a node whose scratch never held it, exactly."""
    path = _study(write_study, tmp_path / "node-a", config={"epochs": 9, "sleep_s": 0.01})
    cfg = load_study_config(path)
    trial = _trial(cfg)
    shared = cfg.trial_dir(trial.number)
    interrupt = threading.Event()
    watch = _SharedWatch(shared, interrupt_at=3, interrupt=interrupt)
    with pytest.raises(TrialInterrupted):
        Objective(cfg, hooks=[watch], interrupt=interrupt).run(trial)
    assert {"checkpoint.json", "metrics.json", CHECKPOINT_MANIFEST} <= watch.at_train_end
    assert "checkpoint.json" not in watch.during
    assert not (tmp_path / "node-a" / cfg.name / "trials" / "0").exists()
    ckpt = json.loads((shared / "checkpoint.json").read_text())
    assert ckpt["epoch"] == 3  # epochs 0-3 done: the resume continues with epoch 4

    other = load_study_config(path, overrides=[f"scratch.dir={tmp_path / 'node-b'}"])
    watch_b = _SharedWatch(shared)
    resumed = Objective(other, hooks=[watch_b]).run(trial, resume=True)
    assert resumed.state == TrialState.COMPLETE
    reference = linear_regression(
        {"lr": trial.params["lr"], "momentum": trial.params["momentum"], "epochs": 9, "run_dir": str(tmp_path / "ref")}
    )
    assert resumed.values == [reference["metrics"]["val_loss"]]
    assert sorted(trial.study.trials[0].intermediate_values) == list(range(9))
    files = {p.name for p in shared.iterdir()}
    assert "checkpoint.json" not in files and CHECKPOINT_MANIFEST not in files  # a finished trial keeps no checkpoint
    assert not (tmp_path / "node-b" / cfg.name / "trials" / "0").exists()
    assert json.loads((shared / "trial.json").read_text())["scratch"]["run_dir"].startswith(str(tmp_path / "node-b"))


@pytest.mark.slow
def test_a_signalled_worker_copies_its_checkpoint_first_and_resumes_it_from_another_nodes_scratch(tmp_path):
    """The real ``slurm.worker`` process: SIGUSR2 mid-epoch, exit 75 with the trial suspended and
    its checkpoint in the shared folder; a worker whose ``$TMPDIR`` is another empty folder (a
    requeue on another node) resumes it from there, with the values of an uninterrupted run."""
    import signal

    import yaml

    from hpo._heartbeat import SUSPENDED_KEY
    from slurm._preempt import PREEMPTED_EXIT_CODE, RESUMES_KEY
    from tests.slurm_tests._cluster import load, slurm_worker, trial_dir, uninterrupted_values, wait_for, write_study

    study_file = write_study(
        tmp_path,
        storage=f"sqlite:///{tmp_path}/s.db",
        config={"epochs": 3, "epoch_s": 1.5, "batches": 15},
        scratch={"dir": "auto", "copy_back": ["*.json", "*.jsonl", "*.safetensors"]},
    )
    name = yaml.safe_load(study_file.read_text())["name"]
    node_a, node_b = tmp_path / "node-a", tmp_path / "node-b"
    node_a.mkdir()
    node_b.mkdir()
    key = {"HPO_WORKER_KEY": "laptop-1"}  # a caller-given key promises a restart with the same key
    proc = slurm_worker(study_file, 1, env={**key, "TMPDIR": str(node_a)})
    scratch_a = node_a / name / "trials" / "0"
    wait_for(lambda: (scratch_a / "epochs.jsonl").is_file(), 60, "the first epoch in node a's scratch", poll_s=0.1)
    shared = trial_dir(study_file, 0)
    assert not (shared / "checkpoint.json").exists()  # the checkpoint lives on the node while training
    time.sleep(0.5)  # mid-epoch 1
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=60) == PREEMPTED_EXIT_CODE
    (trial,) = load(study_file).get_trials()
    assert trial.state == TrialState.RUNNING and trial.system_attrs[SUSPENDED_KEY] is not None
    assert (shared / "checkpoint.json").is_file() and not scratch_a.exists()
    (stop,) = [json.loads(s) for s in (shared / "interrupts.jsonl").read_text().splitlines()]
    assert stop["epoch"] == 1 and 0 < stop["batch"] < 15

    assert slurm_worker(study_file, 1, env={**key, "TMPDIR": str(node_b)}).wait(timeout=120) == 0
    (trial,) = load(study_file).get_trials()
    assert trial.state == TrialState.COMPLETE and trial.system_attrs[RESUMES_KEY] == 1
    starts = [json.loads(s) for s in (shared / "workers.jsonl").read_text().splitlines()]
    assert [s["resume"] for s in starts] == [False, True]
    epochs = [json.loads(s)["epoch"] for s in (shared / "epochs.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # none redone: it went on from the shared checkpoint's batch
    assert not (node_b / name / "trials" / "0").exists()
    assert json.loads((shared / "trial.json").read_text())["scratch"]["run_dir"] == str(node_b / name / "trials" / "0")
    assert [trial.intermediate_values[e] for e in range(3)] == uninterrupted_values(study_file, trial, tmp_path / "ref")
