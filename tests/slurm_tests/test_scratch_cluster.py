"""Node-local scratch on the real dev cluster: a study through sbatch whose trial trains in the
job's ``$SLURM_TMPDIR``, is preempted with SIGUSR2 and resumes after the requeue from the shared
checkpoint, in a scratch folder that never held it.

Run ``bash slurm/dev-cluster/up.sh`` first (the test skips otherwise; it never starts it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from hpo.objective import trial_seed
from slurm._preempt import RESUMES_KEY
from slurm.testing import counter_trainable
from tests.slurm_tests._cluster import REPO, load, squeue_empty, trial_dir, wait_for, write_study

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_preempted_trial_resumes_from_the_shared_checkpoint_in_an_empty_scratch(slurm_cluster, tmp_path):
    data = tmp_path / "shared-data.bin"
    data.write_bytes(os.urandom(1 << 16))
    study_file = write_study(
        tmp_path,
        storage=f"journal:{tmp_path}/study.journal",
        config={"epochs": 6, "epoch_s": 0.5, "data": {"path": str(data)}},
        scratch={"dir": "auto", "stage": ["data.path"], "copy_back": ["*.json", "*.jsonl", "*.safetensors"]},
    )
    name = yaml.safe_load(study_file.read_text())["name"]
    # Each run of the job gets its own node-local folder, as a requeue onto another node would.
    setup = tmp_path / "setup.sh"
    setup.write_text(f'export SLURM_TMPDIR="{tmp_path}/node-${{SLURM_RESTART_COUNT:-0}}"\nmkdir -p "$SLURM_TMPDIR"\n')
    proc = subprocess.run(
        ["sbatch", "--parsable", "-o", f"{tmp_path}/%x_%A_%a.out", str(REPO / "slurm" / "launch_hpo.sbatch")],
        env={**os.environ, "STUDY": str(study_file), "N_TRIALS": "1", "HPO_SETUP": str(setup)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    job = proc.stdout.strip().split(";")[0]
    scratch_0 = tmp_path / "node-0" / name / "trials" / "0"
    shared = trial_dir(study_file, 0)
    wait_for(lambda: len(_jsonl(scratch_0 / "epochs.jsonl")) >= 2, 120, "2 epochs in the first run's scratch", poll_s=0.2)
    assert not (shared / "checkpoint.json").exists()  # the checkpoint stays on the node while training
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True)  # as --signal=B:USR2@120 does
    wait_for(lambda: squeue_empty(job), 180, f"requeued job {job}")
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))

    study = load(study_file)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.system_attrs[RESUMES_KEY] == 1, logs
    assert "restart 1" in logs
    starts = _jsonl(shared / "workers.jsonl")
    assert [s["resume"] for s in starts] == [False, True] and starts[0]["pid"] != starts[1]["pid"]
    assert len(_jsonl(shared / "interrupts.jsonl")) == 1
    epochs = [e["epoch"] for e in _jsonl(shared / "epochs.jsonl")]
    assert sorted(set(epochs)) == list(range(6)) and len(epochs) - len(set(epochs)) <= 1  # at most one epoch redone
    # Both scratch trial folders are gone; each run staged its own copy of the dataset.
    assert not scratch_0.exists() and not (tmp_path / "node-1" / name / "trials" / "0").exists()
    record = json.loads((shared / "trial.json").read_text())
    assert record["scratch"]["run_dir"] == str(tmp_path / "node-1" / name / "trials" / "0")
    assert record["config"]["data"]["path"] == str(data)
    copy = Path(record["scratch"]["staged"]["data.path"]["copy"])
    assert copy.parent == tmp_path / "node-1" / name / "data" and copy.read_bytes() == data.read_bytes()
    raw = yaml.safe_load(study_file.read_text())
    config = {
        **raw["config"],
        **trial.params,
        "seed": trial_seed(raw.get("seed", 0), 0),
        "run_dir": str(tmp_path / "reference"),
        "epoch_s": 0.0,
    }
    assert trial.value == pytest.approx(counter_trainable(config)["metrics"]["val_loss"], abs=1e-12)
