"""Chaos run on the dev cluster: one study, many array tasks, faults injected at random times.

One seeded study of ``--trials`` short trials of :func:`slurm.testing.counter_trainable` (a few
epochs of many batches, some epochs longer than the cluster's KillWait) is run by ``--tasks``
array tasks of ``slurm/launch_hpo.sbatch`` plus ``--one-trial-tasks`` tasks that run one trial
each, on a freshly created PostgreSQL database and, separately, on journal storage. While it
runs, a driver injects faults at random (seeded) points of running trials, spread over the
first ``stop_faults_at`` of the target by the study's progress, not by the clock: SIGKILL of a
worker, USR2 preemption (``scancel -b --signal=USR2``), ``scontrol requeue``, ``scancel`` of a
whole task and, on PostgreSQL, one server restart (``pg_ctlcluster … restart``, as
``slurm/dev-cluster/up.sh`` starts it). Then it checks the invariants and prints a table:

* every trial number is accounted for (0…n-1; each failed trial has its retry);
* completed trials = the target, and no retry chain has two completed trials (none lost, none
  duplicated), no trial is left RUNNING or WAITING;
* every completed trial's intermediate values are continuous (one per epoch) and equal to an
  uninterrupted run of the same parameters and seed, resumed ones included;
* no password in any file under the outputs (the URL reaches the jobs as ``HPO_STORAGE`` only);
* the top-k trials' weights are in ``collated/``.

Needs the dev cluster (``sudo bash slurm/dev-cluster/up.sh``; ``source /tmp/slurm-ci/env``) and
root for the PostgreSQL database and restart. Exit status 0 when every invariant holds.

Example::

    python benchmarks/chaos_study.py                     # full: 64 trials, 16 + 4 tasks, both storages
    python benchmarks/chaos_study.py --small --storages journal
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import typing as tp
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SBATCH = REPO / "slurm" / "launch_hpo.sbatch"
FAULT_KINDS = ("sigkill", "usr2", "requeue", "scancel")
#: Heartbeats in seconds for the chaos run (a dead worker's trial is reaped in seconds).
HEARTBEAT_ENV = {"HPO_HEARTBEAT_S": "1", "HPO_GRACE_S": "6"}


@dataclasses.dataclass
class Settings:
    """One chaos configuration."""

    trials: int = 64
    tasks: int = 16
    one_trial_tasks: int = 4
    epochs: int = 3
    batches: int = 30
    epoch_s: tuple[float, ...] = (1.5, 6.0)  # tuned: some epochs longer than KillWait (5 s)
    faults: int = 16
    keep_top_k: int = 3
    seed: int = 0
    timeout_s: float = 900.0
    stop_faults_at: float = 0.7  # no new fault once this fraction of the target is complete
    pg_restart: bool = True  # restart PostgreSQL once mid-study (postgres runs)


@dataclasses.dataclass
class Fault:
    kind: str
    at_s: float
    target: str
    trial: int | None
    ok: bool
    detail: str = ""


@dataclasses.dataclass
class RunResult:
    storage: str
    faulty: bool
    wall_s: float
    faults: list[Fault]
    checks: dict[str, tuple[bool, str]]
    counts: dict[str, int]


# ----------------------------------------------------------------------------- cluster helpers


def _run(cmd: list[str], **kw: tp.Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)


def slurm_missing() -> str | None:
    """Why the dev cluster cannot be used, or ``None``."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no Slurm here (sbatch/sinfo); start it with sudo bash slurm/dev-cluster/up.sh"
    out = _run(["sinfo", "-h", "-o", "%t"]).stdout.split()
    if not any(s.startswith(("idle", "mix", "alloc")) for s in out):
        return "no Slurm node up (sinfo); start it with sudo bash slurm/dev-cluster/up.sh"
    return None


def _queued(array_ids: tp.Sequence[str]) -> list[tuple[str, str]]:
    """``(job_task, state)`` of every task of ``array_ids`` still in the queue."""
    if not array_ids:
        return []
    out = _run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(array_ids)]).stdout
    return [tuple(line.split()[:2]) for line in out.splitlines() if line.strip()]  # type: ignore[misc]


def _submit(study_file: Path, logs: Path, env: dict[str, str], n_tasks: int, n_trials: int, name: str) -> str:
    proc = _run(
        ["sbatch", "--parsable", f"--array=0-{n_tasks - 1}", f"--job-name={name}", "-o", f"{logs}/%x_%A_%a.out", str(SBATCH)],
        env={**os.environ, **env, "STUDY": str(study_file), "N_TRIALS": str(n_trials)},
        cwd=logs,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch failed: {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


# ----------------------------------------------------------------------------- PostgreSQL


def _pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]


def postgres_missing() -> str | None:
    """Why a fresh database cannot be made (and the server restarted), or ``None``."""
    if not os.environ.get("HPO_PG_URL"):
        return "HPO_PG_URL not set (source /tmp/slurm-ci/env after slurm/dev-cluster/up.sh)"
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("pg_ctlcluster") is None:
        return "a fresh database and a server restart need root, runuser and pg_ctlcluster"
    if not Path("/etc/postgresql").is_dir():
        return "no local PostgreSQL cluster (/etc/postgresql)"
    return None


def _psql_su(sql: str) -> subprocess.CompletedProcess:
    return _run(["runuser", "-u", "postgres", "--", "psql", "-qtAX", "-c", sql])


def fresh_database(base_url: str, name: str) -> str:
    """Create database ``name`` owned by the URL's role; return its URL."""
    role = re.match(r"^[^:]+://([^:@/]+)", base_url).group(1)  # type: ignore[union-attr]
    proc = _psql_su(f'CREATE DATABASE "{name}" OWNER "{role}"')
    if proc.returncode != 0:
        raise RuntimeError(f"CREATE DATABASE {name} failed: {proc.stderr.strip()}")
    return base_url.split("?", 1)[0].rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    _psql_su(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restart_postgres() -> tuple[bool, str]:
    """Restart the server as ``up.sh`` runs it (``pg_ctlcluster VERSION main``)."""
    proc = _run(["pg_ctlcluster", _pg_version(), "main", "restart"], timeout=120)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()[-200:]


def _password(url: str) -> str | None:
    m = re.match(r"^[^:]+://[^:@/]+:([^@]+)@", url)
    return m.group(1) if m else None


# ----------------------------------------------------------------------------- the study


def write_study(folder: Path, name: str, storage_in_file: str, s: Settings) -> Path:
    """The study file: counter_trainable, max_trials = the target, epoch_s tuned among ``s.epoch_s``."""
    study = {
        "name": name,
        "output_dir": str(folder / "outputs"),
        "storage": storage_in_file,
        "metric": "val_loss",
        "direction": "minimize",
        "pruner": "none",
        "sampler": {"name": "RandomSampler"},
        "seed": s.seed,
        "max_trials": s.trials,
        "trainable": "slurm.testing:counter_trainable",
        "config": {"x": 0.0, "y": 0.0, "epochs": s.epochs, "epoch_s": s.epoch_s[0], "batches": s.batches},
        "collate_results": False,
        "keep_top_k": s.keep_top_k,
        "tune_params": {
            "x": {"state": True, "suggest": "float", "kwargs": {"low": -1.0, "high": 1.0}, "path": "x"},
            "y": {"state": True, "suggest": "float", "kwargs": {"low": -1.0, "high": 1.0}, "path": "y"},
            "epoch_s": {"state": True, "suggest": "cat", "kwargs": {"choices": list(s.epoch_s)}, "path": "epoch_s"},
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _load_study(name: str, url: str) -> tp.Any:
    import optuna

    from hpo.study import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(url))


def _trials(name: str, url: str) -> list[tp.Any]:
    try:
        return _load_study(name, url).get_trials(deepcopy=False)
    except Exception:  # not created yet, or the server is restarting
        return []


# ----------------------------------------------------------------------------- faults


class FaultDriver(threading.Thread):
    """Inject ``settings.faults`` faults into the running tasks, paced by the study's progress (seeded).

    Fault ``i`` of ``n`` is due once ``i / n`` of the fault window (``stop_faults_at`` of the
    target) is complete, then waits a seeded random part of a trial so that it lands at a random
    point of one: a loaded machine slows the trials, not the faults' share of them.
    """

    POLL_S = 0.5

    def __init__(
        self, s: Settings, name: str, url: str, trials_dir: Path, arrays: list[str], pg_restart: bool, t0: float
    ) -> None:
        super().__init__(daemon=True)
        self.s, self.name, self.url, self.trials_dir, self.arrays = s, name, url, trials_dir, arrays
        self.rng = random.Random(s.seed)
        kinds = [FAULT_KINDS[i % len(FAULT_KINDS)] for i in range(s.faults)]
        self.rng.shuffle(kinds)
        self.plan = kinds
        self.pg_restart = pg_restart
        self.t0 = t0
        self.faults: list[Fault] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from optuna.trial import TrialState

        pending = list(self.plan)
        restart_at = 0.35 if self.pg_restart else None
        window = self.s.stop_faults_at * self.s.trials
        trial_s = self.s.epochs * sum(self.s.epoch_s) / len(self.s.epoch_s)
        while pending or restart_at is not None:
            if self.stop.wait(self.POLL_S):
                return
            done = sum(t.state == TrialState.COMPLETE for t in _trials(self.name, self.url))
            if done >= window:
                return
            if restart_at is not None and done >= restart_at * self.s.trials:
                ok, detail = restart_postgres()
                self.faults.append(Fault("pg_restart", time.monotonic() - self.t0, "postgresql", None, ok, detail))
                restart_at = None
                continue
            if not pending or done < window * (len(self.plan) - len(pending)) / len(self.plan) or not self._running():
                continue
            if self.stop.wait(self.rng.uniform(0.0, trial_s / 2)):
                return
            running = self._running()
            if running:
                self.faults.append(self._inject(pending.pop(), self.rng.choice(running)))

    def _running(self) -> list[tp.Any]:
        """The running trials whose Slurm task is running and whose worker has started."""
        from optuna.trial import TrialState

        live = {job for job, state in _queued(self.arrays) if state == "RUNNING"}
        return [
            t
            for t in _trials(self.name, self.url)
            if t.state == TrialState.RUNNING
            and self._owner(t) in live
            and (self.trials_dir / str(t.number) / "workers.jsonl").exists()
        ]

    @staticmethod
    def _owner(trial: tp.Any) -> str | None:
        from hpo._heartbeat import owner_of

        owner = owner_of(trial) or ""
        return owner[len("slurm:") :] if owner.startswith("slurm:") else None

    def _inject(self, kind: str, trial: tp.Any) -> Fault:
        job = self._owner(trial)
        at = time.monotonic() - self.t0
        if kind == "sigkill":
            starts = [
                json.loads(line) for line in (self.trials_dir / str(trial.number) / "workers.jsonl").read_text().splitlines()
            ]
            pid = int(starts[-1]["pid"])
            try:
                os.kill(pid, signal.SIGKILL)  # the worker itself, mid-trial: no handler runs
                return Fault(kind, at, job, trial.number, True, f"pid {pid}")
            except ProcessLookupError:
                return Fault(kind, at, job, trial.number, False, f"pid {pid} gone")
        cmd = {
            "usr2": ["scancel", "-b", "--signal=USR2", job],
            "requeue": ["scontrol", "requeue", job],
            "scancel": ["scancel", job],
        }[kind]
        proc = _run(cmd)
        return Fault(kind, at, job, trial.number, proc.returncode == 0, proc.stderr.strip()[-200:])


# ----------------------------------------------------------------------------- one run


def run_once(s: Settings, storage: str, faulty: bool, out: Path, log: tp.Callable[[str], None]) -> RunResult:
    """Run the study once on ``storage`` (``postgres``/``journal``), with or without faults."""
    tag = f"{storage}-{'chaos' if faulty else 'baseline'}"
    folder = out / tag
    folder.mkdir(parents=True, exist_ok=True)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    name = f"chaos_{storage}_{'f' if faulty else 'b'}_{s.seed}_{uuid.uuid4().hex[:6]}"
    db = None
    if storage == "postgres":
        db = name.lower()
        url = fresh_database(os.environ["HPO_PG_URL"], db)
        in_file = re.sub(r"://([^:@/]+):[^@]+@", r"://\1@", url)  # the file never holds the password
    else:
        url = in_file = f"journal:{folder}/study.journal"
    study_file = write_study(folder, name, in_file, s)
    env = {"HPO_STORAGE": url, **HEARTBEAT_ENV, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # Twice the capacity needed: faults end tasks early; max_trials stops the workers at the target.
    per_task = 2 * math.ceil(s.trials / max(1, s.tasks)) + 1
    t0 = time.monotonic()
    arrays = [_submit(study_file, logs, env, s.tasks, per_task, f"{name}-a")]
    if s.one_trial_tasks:
        arrays.append(_submit(study_file, logs, env, s.one_trial_tasks, 1, f"{name}-b"))
    log(
        f"[{tag}] study {name}: arrays {', '.join(arrays)} ({s.tasks} tasks × {per_task} trials, "
        f"{s.one_trial_tasks} tasks × 1 trial)"
    )
    trials_dir = folder / "outputs" / name / "trials"
    driver = None
    if faulty:
        driver = FaultDriver(s, name, url, trials_dir, arrays, pg_restart=storage == "postgres" and s.pg_restart, t0=t0)
        driver.start()
    sweepers = 0
    try:
        while _queued(arrays):
            if time.monotonic() - t0 > s.timeout_s:
                raise TimeoutError(f"{tag}: tasks still queued after {s.timeout_s} s")
            time.sleep(2.0)
        # Every task ended. If trials are left (every worker that could run a retry died) or the
        # faults ended so many tasks that the target was not reached, one more task finishes the
        # study, as a user would submit it; such sweeper tasks are counted in the table.
        from optuna.trial import TrialState

        for _ in range(3):
            trials = _trials(name, url)
            left = [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
            short = s.trials - sum(t.state == TrialState.COMPLETE for t in trials)
            if not left and short <= 0:
                break
            sweepers += 1
            log(
                f"[{tag}] {len(left)} trial(s) left {sorted({t.state.name for t in left})}, {short} short of the "
                f"target: sweeper task {sweepers}"
            )
            arrays.append(_submit(study_file, logs, env, 1, max(short, len(left)) + 2, f"{name}-s"))
            while _queued(arrays):
                if time.monotonic() - t0 > s.timeout_s:
                    raise TimeoutError(f"{tag}: sweeper still queued after {s.timeout_s} s")
                time.sleep(2.0)
    finally:
        if driver is not None:
            driver.stop.set()
            driver.join(timeout=30)
        for array in arrays:
            _run(["scancel", array])
    wall_s = time.monotonic() - t0
    collate = subprocess.run(
        [sys.executable, "-m", "hpo.collate", "--study", str(study_file)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    (logs / "collate.log").write_text(collate.stdout + collate.stderr)
    faults = driver.faults if driver else []
    (folder / "faults.json").write_text(json.dumps([dataclasses.asdict(f) for f in faults], indent=1))
    checks, counts = check_invariants(s, name, url, folder, study_file, collate.returncode)
    counts["sweeper_tasks"] = sweepers
    # Tasks whose worker died of an error (not of an injected fault): a Python traceback in the log.
    counts["worker_errors"] = sum(
        "Traceback (most recent call last)" in p.read_text(errors="replace") for p in logs.glob("*.out")
    )
    if db is not None:
        drop_database(db)
    return RunResult(storage, faulty, wall_s, faults, checks, counts)


# ----------------------------------------------------------------------------- invariants


def _reference_values(s: Settings, trial_dir: Path) -> list[float]:
    from slurm.testing import counter_trainable

    info = json.loads((trial_dir / "trial.json").read_text())
    params = info["params"]
    config = {
        "x": params["x"],
        "y": params["y"],
        "epochs": s.epochs,
        "batches": s.batches,
        "epoch_s": 0.0,
        "seed": info["seed"],
        "run_dir": str(trial_dir.parent.parent / "_reference" / trial_dir.name),
    }
    values: list[float] = []
    counter_trainable(config, lambda epoch, metrics: values.append(metrics["val_loss"]))
    shutil.rmtree(trial_dir.parent.parent / "_reference" / trial_dir.name, ignore_errors=True)
    return values


def check_invariants(
    s: Settings, name: str, url: str, folder: Path, study_file: Path, collate_rc: int
) -> tuple[dict[str, tuple[bool, str]], dict[str, int]]:
    from optuna.trial import TrialState

    from hpo._heartbeat import FAILED_TRIAL_KEY, RETRY_OF_ATTR
    from hpo.collate import collated_name, ranked_trials
    from slurm._preempt import RESUMES_KEY

    study = _load_study(name, url)
    trials = study.get_trials()
    by_state = {st: [t for t in trials if t.state == st] for st in TrialState}
    checks: dict[str, tuple[bool, str]] = {}
    numbers = sorted(t.number for t in trials)
    retried = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials} - {None}
    unretried = [t.number for t in by_state[TrialState.FAIL] if t.number not in retried]
    checks["every trial number accounted for"] = (
        numbers == list(range(len(trials))) and not unretried,
        f"{len(trials)} trials, numbers 0..{len(trials) - 1}; failed without a retry: {unretried or 'none'}",
    )
    complete = by_state[TrialState.COMPLETE]
    checks["completed trials = target"] = (len(complete) == s.trials, f"{len(complete)} complete, target {s.trials}")
    chains: dict[int, list[tp.Any]] = {}
    for t in trials:
        chains.setdefault(int(t.system_attrs.get(FAILED_TRIAL_KEY, t.number)), []).append(t)
    done = {k: sum(t.state == TrialState.COMPLETE for t in v) for k, v in chains.items()}
    lost = sorted(k for k, n in done.items() if n == 0)
    duplicated = sorted(k for k, n in done.items() if n > 1)
    checks["no retry chain with two completed trials"] = (not duplicated, f"duplicated chains: {duplicated or 'none'}")
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    checks["no trial left RUNNING or WAITING"] = (not left, f"left: {left or 'none'}")
    trials_dir = folder / "outputs" / name / "trials"
    bad_values, resumed = [], 0
    for t in complete:
        resumed += int(t.system_attrs.get(RESUMES_KEY, 0)) > 0
        ref = _reference_values(s, trials_dir / str(t.number))
        got = [t.intermediate_values.get(e) for e in range(s.epochs)]
        if sorted(t.intermediate_values) != list(range(s.epochs)) or got != ref:
            bad_values.append(t.number)
    checks["intermediate values continuous, equal to an uninterrupted run"] = (
        not bad_values,
        f"{len(complete)} checked ({resumed} resumed); differing: {bad_values or 'none'}",
    )
    password = _password(url)
    leaks = []
    if password:
        needles = [f":{password}@".encode(), url.encode()]
        for path in folder.rglob("*"):
            if path.is_file() and any(n in path.read_bytes() for n in needles):
                leaks.append(str(path.relative_to(folder)))
    checks["no password in any file under the outputs"] = (
        not leaks,
        "no password in this storage's URL" if not password else f"files with it: {leaks or 'none'}",
    )
    collated = folder / "outputs" / name / "collated"
    top = ranked_trials(study)[: s.keep_top_k]
    missing = [
        t.number
        for t in top
        if not (collated / collated_name(t, "model.safetensors", None)).is_file()
        and not list(collated.glob(f"*{t.number}*model.safetensors"))
    ]
    kept = sorted(p.name for p in collated.glob("*.safetensors")) if collated.is_dir() else []
    checks["top-k weights present"] = (
        collate_rc == 0 and not missing and len(kept) == s.keep_top_k,
        f"hpo.collate exit {collate_rc}; {len(kept)} weight file(s) for top-{s.keep_top_k} {[t.number for t in top]}; "
        f"missing: {missing or 'none'}",
    )
    counts = {
        "trials": len(trials),
        "complete": len(complete),
        "failed": len(by_state[TrialState.FAIL]),
        "retries": len(retried),
        "resumed": resumed,
        "lost": len(lost),
        "duplicated": len(duplicated),
    }
    return checks, counts


# ----------------------------------------------------------------------------- report


def table(results: list[RunResult]) -> str:
    """The summary table (markdown)."""
    lines = []
    by_storage: dict[str, dict[bool, RunResult]] = {}
    for r in results:
        by_storage.setdefault(r.storage, {})[r.faulty] = r
    head = [
        "storage",
        *FAULT_KINDS,
        "pg_restart",
        "trials",
        "complete",
        "retries",
        "resumed",
        "lost",
        "duplicated",
        "sweepers",
        "worker errors",
        "wall (faults)",
        "wall (no faults)",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for storage, runs in by_storage.items():
        r = runs.get(True) or runs[False]
        kinds = {k: sum(f.kind == k and f.ok for f in r.faults) for k in (*FAULT_KINDS, "pg_restart")}
        base = runs.get(False)
        row = [
            storage,
            *(str(kinds[k]) for k in (*FAULT_KINDS, "pg_restart")),
            str(r.counts["trials"]),
            str(r.counts["complete"]),
            str(r.counts["retries"]),
            str(r.counts["resumed"]),
            str(r.counts["lost"]),
            str(r.counts["duplicated"]),
            str(r.counts.get("sweeper_tasks", 0)),
            str(r.counts.get("worker_errors", 0)),
            f"{r.wall_s:.0f} s",
            f"{base.wall_s:.0f} s" if base and r.faulty else "—",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for r in results:
        label = f"{r.storage} ({'faults' if r.faulty else 'no faults'})"
        for name, (ok, detail) in r.checks.items():
            lines.append(f"{'PASS' if ok else 'FAIL'}  {label}: {name} — {detail}")
    return "\n".join(lines)


def run(
    s: Settings, storages: tp.Sequence[str], out: Path, baseline: bool = True, log: tp.Callable[[str], None] = print
) -> tuple[list[RunResult], bool]:
    """Run the chaos configuration on each storage (after a fault-free baseline); returns the
    results and whether every invariant held."""
    results = []
    for storage in storages:
        if baseline:
            results.append(run_once(s, storage, False, out, log))
        results.append(run_once(s, storage, True, out, log))
    ok = all(ok for r in results for ok, _ in r.checks.values())
    return results, ok


def main(argv: tp.Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storages", nargs="+", choices=("postgres", "journal"), default=["postgres", "journal"])
    p.add_argument("--small", action="store_true", help="the CI configuration: 12 trials, 4 + 2 tasks, 6 faults")
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--one-trial-tasks", type=int, default=None)
    p.add_argument("--faults", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="skip the fault-free run")
    p.add_argument("--no-pg-restart", action="store_true", help="do not restart PostgreSQL mid-study")
    p.add_argument("--out", default=None, help="output folder (default: outputs/chaos-<seed>)")
    args = p.parse_args(argv)
    s = Settings(trials=12, tasks=4, one_trial_tasks=2, epochs=2, faults=6, timeout_s=420) if args.small else Settings()
    for key in ("trials", "tasks", "one_trial_tasks", "faults"):
        if getattr(args, key) is not None:
            setattr(s, key, getattr(args, key))
    s.seed = args.seed
    s.pg_restart = not args.no_pg_restart
    reason = slurm_missing() or ("postgres" in args.storages and postgres_missing()) or None
    if reason:
        print(f"chaos_study: cannot run: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out or REPO / "outputs" / f"chaos-{s.seed}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    results, ok = run(s, args.storages, out, baseline=not args.no_baseline)
    text = table(results)
    print(text)
    (out / "table.md").write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
