"""The FSP-Net campaign as one seeded sequence of the toolkit's own commands.

    python scripts/campaign.py --dry-run          # print the commands, run nothing
    python scripts/campaign.py                    # run them all (~13 h on a quiet 2-core CPU)
    python scripts/campaign.py --from encoder-study --to encoder-best
    python scripts/campaign.py --quick --root /tmp/campaign   # tiny sizes: proves the sequence runs

Steps (docs/campaign.md explains each and where its numbers go):

1. ``synth-train`` / ``synth-heldout``: ``fspnet.synthesize`` of the training file (seed S) and
   of the held-out noisy spectra (seed S + 1);
2. ``decoder-study``, ``decoder-report``, ``decoder-best``: ``hpo.launch --executor local`` with
   2 workers on ``studies/fspnet_decoder.yaml``, its report, ``hpo.train_best`` with K seeds
   on the whole training file;
3. ``encoder-study``, ``encoder-report``, ``encoder-best``: the same for
   ``studies/fspnet_encoder.yaml``, which trains through the decoder's ``best/seed-S``;
4. ``pruning``: ``benchmarks/bench_pruning.py`` (Hyperband against no pruning, TPE against
   random search) with its plot in ``docs/campaign/``;
5. ``default-decoder``, ``default-encoder``: ``fspnet.train`` of FSP-Net's default decoder
   (``fspnet.nets.decoder_config()``: 217,854 weights) and default encoder
   (``encoder_config()``) on the same file, same seeds and the same most epochs as the
   winners' final training;
6. ``evaluate-*``, ``compare``: ``fspnet.evaluate`` of the found, the default and today's
   shipped encoder on the held-out spectra (recovery, reduced PGStat (a)-(d), timing, the real
   MAXI J1820+070 spectrum), ``fspnet.evaluate`` of every seed's found and default decoder
   (held-out reconstruction MSE and µs per spectrum: the decoder table) and ``fspnet.compare``
   of every seed's encoder;
7. ``install``: ``hpo.train_best --install`` of the found encoder of seed S (the one evaluated;
   it carries its decoder) into ``fspnet/pretrained/``: :func:`fspnet.pretrained.install` writes
   ``origin.json`` (both studies, their trials, parameters, every seed's value with mean ± std,
   the commits) and installs that evaluation as ``evaluation.json``.

Quick mode (``--quick``) runs the same commands on the same study files, with ``--set``
overrides of tiny sizes and of an output folder under ``--root``.

Every step writes ``<root>/done/<step>`` when it succeeds and is skipped on the next run, so
an interrupted campaign continues where it stopped (the commands resume themselves too:
studies stop at ``max_trials``, ``train_best`` and ``fspnet.train --resume`` continue their
runs). Each training is seeded; the studies' samplers are seeded per worker (study seed and
worker key), so with two concurrent workers only the studies' trial order can differ on a rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "scripts"):  # the toolkit, and campaign_tables beside this file
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

PY = "python"  # printed; the run uses sys.executable
STUDIES = {"decoder": REPO / "studies" / "fspnet_decoder.yaml", "encoder": REPO / "studies" / "fspnet_encoder.yaml"}


@dataclasses.dataclass
class Step:
    """One command of the campaign."""

    name: str
    argv: list[str]  # the command line
    threads: int = 2  # torch threads of the command (OMP_NUM_THREADS)
    note: str = ""

    def shell(self) -> str:
        env = f"OMP_NUM_THREADS={self.threads} "
        return env + " ".join(shlex.quote(_rel(a)) for a in self.argv)


def _rel(arg: str) -> str:
    """``arg`` with the repository root cut off (commands run in the root), for printing."""
    root = f"{REPO}{os.sep}"
    return arg.replace(root, "") if root in arg else arg


@dataclasses.dataclass
class Plan:
    """Sizes and places of one campaign (the defaults are the real run's)."""

    root: Path
    data_dir: Path
    seed: int = 0
    seeds: int = 2
    workers: int = 2
    trials_per_worker: int = 60
    n_train: int = 300_000  # the shipped recipe's; the studies train on the first 45,000 (their subsets)
    n_heldout: int = 2_000
    bench: tuple[int, int, int] = (40, 3_000, 27)  # trials, subset, max epochs
    decoder_epochs: int = 36  # most epochs of the default decoder: the found one's train_best budget
    encoder_epochs: int = 45
    decoder_patience: int = 10
    encoder_patience: int = 10
    eval_args: tuple[str, ...] = ()
    bench_sets: tuple[str, ...] = ()
    install_dir: Path = REPO / "fspnet" / "pretrained"
    docs_dir: Path = REPO / "docs" / "campaign"
    studies: dict[str, Path] = dataclasses.field(default_factory=lambda: dict(STUDIES))
    #: ``--set`` overrides of each study (launch, report, train_best and install use the same)
    study_sets: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=lambda: {"decoder": (), "encoder": ()})

    @property
    def train_h5(self) -> Path:
        return self.data_dir / "train.h5"

    @property
    def heldout_h5(self) -> Path:
        return self.data_dir / "heldout.h5"


def study_dir(plan: Plan, stage: str) -> Path:
    """``<output_dir>/<name>`` of a stage's study with the plan's overrides (relative paths from the repository root)."""
    from hpo.study import load_study_config

    cfg = load_study_config(plan.studies[stage], check_trainable=False, overrides=plan.study_sets[stage])
    return cfg.study_dir if cfg.study_dir.is_absolute() else REPO / cfg.study_dir


def _sets(plan: Plan, stage: str) -> list[str]:
    return [a for item in plan.study_sets[stage] for a in ("--set", item)]


def steps(plan: Plan) -> list[Step]:
    """The whole campaign, in order."""
    s = plan.seed
    out: list[Step] = [
        Step(
            "synth-train",
            [
                PY,
                "-m",
                "fspnet.synthesize",
                "--n",
                str(plan.n_train),
                "--seed",
                str(s),
                "--workers",
                "2",
                "--out",
                str(plan.train_h5),
                "--no-progress",
            ],
        ),
        Step(
            "synth-heldout",
            [
                PY,
                "-m",
                "fspnet.synthesize",
                "--n",
                str(plan.n_heldout),
                "--seed",
                str(s + 1),
                "--out",
                str(plan.heldout_h5),
                "--no-progress",
            ],
        ),
    ]
    for stage in ("decoder", "encoder"):
        study, sets = str(plan.studies[stage]), _sets(plan, stage)
        out += [
            Step(
                f"{stage}-study",
                [
                    PY,
                    "-m",
                    "hpo.launch",
                    "--study",
                    study,
                    "--executor",
                    "local",
                    "--workers",
                    str(plan.workers),
                    "--trials-per-worker",
                    str(plan.trials_per_worker),
                    "--wait",
                    "--no-progress",
                    *sets,
                ],
                threads=1,
                note="one thread per worker",
            ),
            Step(f"{stage}-report", [PY, "-m", "hpo.report", "--study", study, *sets]),
            Step(f"{stage}-best", [PY, "-m", "hpo.train_best", "--study", study, "--seeds", str(plan.seeds), *sets]),
        ]
    trials, subset, max_epochs = plan.bench
    bench = [
        PY,
        "benchmarks/bench_pruning.py",
        "--study",
        str(plan.studies["decoder"]),
        "--trials",
        str(trials),
        "--subset",
        str(subset),
        "--max-epochs",
        str(max_epochs),
        "--seed",
        str(s),
        "--out",
        str(plan.root / "bench_pruning"),
        "--png",
        str(plan.docs_dir / "pruning.png"),
    ]
    for item in plan.bench_sets:
        bench += ["--set", item]
    out.append(Step("pruning", bench, threads=1, note="two single-thread runs at a time"))

    common = [
        "--config",
        "configs/fspnet.yaml",
        "--resume",
        "--set",
        f"data.path={plan.train_h5}",
        "--set",
        "data.subset=null",
        "--set",
        "training.device=cpu",
        "--set",
        "training.progress=false",
    ]
    for stage, epochs, patience in (
        ("decoder", plan.decoder_epochs, plan.decoder_patience),
        ("encoder", plan.encoder_epochs, plan.encoder_patience),
    ):
        for k in range(plan.seeds):
            argv = [
                PY,
                "-m",
                "fspnet.train",
                "--stage",
                stage,
                "--run-dir",
                str(default_run(plan, stage, s + k)),
                *common,
                "--set",
                f"training.seed={s + k}",
                "--set",
                f"training.epochs={epochs}",
                "--set",
                f"training.patience={patience}",
            ]
            if stage == "encoder":  # FSP-Net's pipeline: the default encoder through the default decoder
                argv += ["--set", f"encoder.decoder_run={default_run(plan, 'decoder', s)}"]
            out.append(Step(f"default-{stage}-seed-{s + k}", argv))

    found = study_dir(plan, "encoder") / "best"
    ensemble, many = plan.root / "ensemble", plan.seeds > 1  # with seeds to average, the ensemble is shipped
    if many:
        out.append(
            Step(
                "ensemble",
                [PY, "-m", "hpo.train_best", "--study", str(plan.studies["encoder"]), "--seeds", str(plan.seeds),
                 *_sets(plan, "encoder"), "--install", str(ensemble), "--install-seed", str(s), "--ensemble"],
                note="the seeds' mean, installed to evaluate it before it is shipped",
            )
        )  # fmt: skip
    evals = [
        *([("ensemble", ["--run", str(ensemble)])] if many else []),
        ("found", ["--run", str(found / f"seed-{s}")]),
        *((f"found-seed-{s + k}", ["--run", str(found / f"seed-{s + k}")]) for k in range(1, plan.seeds)),
        ("default", ["--run", str(default_run(plan, "encoder", s))]),
        ("shipped", ["--pretrained"]),
    ]
    for label, which in evals:
        out.append(
            Step(
                f"evaluate-{label}",
                [
                    PY,
                    "-m",
                    "fspnet.evaluate",
                    *which,
                    "--data",
                    str(plan.heldout_h5),
                    "--out",
                    str(plan.root / "evaluation" / label),
                    "--seed",
                    str(s),
                    "--no-progress",
                    *plan.eval_args,
                ],
            )
        )
    decoders = {"found": study_dir(plan, "decoder") / "best", "default": plan.root / "default_decoder"}
    for k in range(plan.seeds):  # the decoder table: held-out reconstruction MSE and µs per spectrum
        for label, folder in decoders.items():
            out.append(
                Step(
                    f"evaluate-decoder-{label}-seed-{s + k}",
                    [
                        PY,
                        "-m",
                        "fspnet.evaluate",
                        "--run",
                        str(folder / f"seed-{s + k}"),
                        "--data",
                        str(plan.heldout_h5),
                        "--out",
                        str(plan.root / "evaluation" / f"decoder-{label}" / f"seed-{s + k}"),
                        "--no-progress",
                    ],
                    threads=1,
                    note="µs per spectrum on one thread",
                )
            )
    runs = [str(found / f"seed-{s + k}") for k in range(plan.seeds)]
    runs += [str(default_run(plan, "encoder", s + k)) for k in range(plan.seeds)]
    runs += [str(ensemble)] if many else []
    out.append(
        Step(
            "compare",
            [
                PY,
                "-m",
                "fspnet.compare",
                *runs,
                "--data",
                str(plan.heldout_h5),
                "--out",
                str(plan.root / "compare"),
                "--no-progress",
            ],
        )
    )
    out.append(
        Step(
            "install",
            [
                PY,
                "-m",
                "hpo.train_best",
                "--study",
                str(plan.studies["encoder"]),
                "--seeds",
                str(plan.seeds),
                *_sets(plan, "encoder"),
                "--install",
                str(plan.install_dir),
                "--install-seed",
                str(s),
                *(["--ensemble"] if many else []),
                "--evaluation",
                str(plan.root / "evaluation" / ("ensemble" if many else "found") / "summary.json"),
            ],
            note="the final trainings are done: it resumes them at once, then installs what was evaluated",
        )
    )
    return out


def default_run(plan: Plan, stage: str, seed: int) -> Path:
    return plan.root / f"default_{stage}" / f"seed-{seed}"


def quick_plan(root: Path) -> Plan:
    """Tiny sizes under ``root`` through ``--set`` overrides of the study files: the sequence end to
    end in minutes, never touching ``outputs/``, ``data/``, ``docs/`` or the shipped networks."""
    data_dir = root / "data"
    common = (
        f"output_dir={root / 'outputs'}", "n_trials=1", "max_trials=2", "timeout=null",
        f"config.data.path={data_dir / 'train.h5'}", "config.data.subset={n: 300, mode: first, seed: 0}",
        "config.training.epochs=2", "config.training.fine_tune_epochs=1", "pruner.configs.max_resource=3",
        "sampler.configs.n_startup_trials=1", "train_best.config.training.epochs=2",
        "train_best.config.training.fine_tune_epochs=1",
    )  # fmt: skip
    return Plan(
        root=root,
        data_dir=data_dir,
        seeds=2,
        workers=2,
        trials_per_worker=1,
        n_train=1200,
        n_heldout=40,
        bench=(2, 300, 2),
        decoder_epochs=3,
        encoder_epochs=3,
        decoder_patience=2,
        encoder_patience=2,
        eval_args=(
            "--n-fit",
            "3",
            "--n-timing",
            "2",
            "--n-plot",
            "2",
            "--n-saliency",
            "8",
            "--fit-iter",
            "10",
            "--short-iter",
            "2",
        ),
        bench_sets=(f"config.data.path={data_dir / 'train.h5'}", "config.data.generate=null"),
        install_dir=root / "pretrained",
        docs_dir=root / "docs",
        study_sets={
            "decoder": (*common, "config.data.generate=null"),
            "encoder": (*common, f"config.encoder.decoder_run={root / 'outputs' / 'fspnet_decoder' / 'best' / 'seed-0'}"),
        },
    )


def run(plan: Plan, selected: list[Step], *, log: tp.TextIO = sys.stdout) -> None:
    """Run the steps in order; each one that succeeds leaves ``<root>/done/<name>``."""
    done = plan.root / "done"
    done.mkdir(parents=True, exist_ok=True)
    for step in selected:
        marker = done / step.name
        if marker.is_file():
            print(f"[campaign] {step.name}: done earlier ({marker}); skipped", file=log, flush=True)
            continue
        print(f"[campaign] {step.name}: {step.shell()}", file=log, flush=True)
        t0 = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(step.threads), "MKL_NUM_THREADS": str(step.threads)}
        # paths relative to the root it runs in, as printed: the records it writes name no checkout
        argv = [sys.executable if a == PY else _rel(a) for a in step.argv]
        rc = subprocess.run(argv, cwd=REPO, env=env, check=False).returncode
        if rc != 0:
            raise SystemExit(f"[campaign] {step.name}: exited with {rc}; fix it and rerun (finished steps are skipped)")
        marker.write_text(f"{time.perf_counter() - t0:.1f} s\n")
        print(f"[campaign] {step.name}: {time.perf_counter() - t0:.0f} s", file=log, flush=True)


#: configs timed by --measure: the corners of each study's search space that cost most and least
MEASURE: dict[str, dict[str, dict[str, tp.Any]]] = {
    "decoder": {
        "default (GRU, batch 60)": {},
        "no GRU, batch 60": {"decoder.architecture.gru": False},
        "no GRU, batch 512": {"decoder.architecture.gru": False, "training.batch_size": 512},
        "GRU, batch 512": {"training.batch_size": 512},
        "480 wide, 4+4 layers, GRU, batch 60": {
            "decoder.architecture.width": 480,
            "decoder.architecture.dense_layers": 4,
            "decoder.architecture.residual_layers": 4,
        },
    },
    "encoder": {
        "default (3 blocks, batch 60)": {},
        "2 blocks of 8, kernel 3, batch 256": {
            "encoder.architecture.conv_blocks": 2,
            "encoder.architecture.base_filters": 8,
            "training.batch_size": 256,
        },
        "5 blocks 32-64, kernel 7, 480 wide, batch 60": {
            "encoder.architecture.conv_blocks": 5,
            "encoder.architecture.base_filters": 32,
            "encoder.architecture.max_filters": 64,
            "encoder.architecture.kernel": 7,
            "encoder.architecture.dense_width": 480,
        },
    },
}
HYPERBAND_FRACTION = 0.45  # mean epochs of a Hyperband trial / most epochs (rungs 1, 3, 9, 27; docs/campaign.md)
CONTENTION = 1.2  # two single-thread workers on two cores share memory bandwidth and caches
TARGET_MIN = 80  # study wall time aimed at, leaving ~10 min for the trials running at its timeout


def hyperband_fraction(max_resource: int = 30, trials: int = 48, seeds: int = 5) -> list[float]:
    """Mean epochs per trial / ``max_resource`` of Optuna's HyperbandPruner (min 1, η 3) with the
    studies' TPE settings, on a synthetic learning curve ``a + b / sqrt(epoch)`` plus noise.

    The :data:`HYPERBAND_FRACTION` of the sizing; one value per seed.
    """
    import numpy as np
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fractions = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)

        def objective(trial: optuna.Trial, rng: np.random.Generator = rng) -> float:
            a = trial.suggest_float("a", 0.01, 1, log=True)
            b = trial.suggest_float("b", 0, 1)
            v = math.inf
            for epoch in range(1, max_resource + 1):
                v = a + b / math.sqrt(epoch) + 0.01 * rng.normal()
                trial.report(v, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return v

        study = optuna.create_study(  # Hyperband assigns brackets by a hash of the study name: fix it
            study_name=f"hyperband-fraction-{seed}",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=3),
        )
        study.optimize(objective, n_trials=trials)
        fractions.append(sum(len(t.intermediate_values) for t in study.trials) / trials / max_resource)
    return fractions


def measure(data: Path, n: int, out: Path, decoder_run: Path | None = None) -> dict[str, tp.Any]:
    """Time 2 epochs of the :data:`MEASURE` configs on ``n`` spectra of ``data`` with one thread and
    print ms per training spectrum per epoch, each study's predicted wall time and the subset
    that fills :data:`TARGET_MIN` minutes.

    The decoder configs run first; the encoders train through ``decoder_run`` (the decoder
    study's winner: an encoder epoch through a GRU decoder costs several times one through a decoder
    without) or, when None, through the default decoder just timed.
    """
    import torch
    import yaml

    from fspnet.config import load_config
    from fspnet.train import train

    torch.set_num_threads(1)
    base = {
        "data.path": str(data),
        "data.subset": {"n": n, "mode": "first", "seed": 0},
        "training.epochs": 2,
        "training.patience": None,
        "training.progress": False,
        "training.plots": False,
        "training.device": "cpu",
        "overwrite": True,
    }
    results: dict[str, tp.Any] = {}
    for stage, configs in MEASURE.items():
        per = {}
        for label, extra in configs.items():
            run_dir = out / stage / label.split(" ")[0].replace(",", "")
            over = {**base, **extra, "stage": stage, "run_dir": str(run_dir)}
            if stage == "encoder":
                over["encoder.decoder_run"] = str(decoder_run or out / "decoder" / "default")
            result = train(load_config(REPO / "configs" / "fspnet.yaml", over))
            history = json.loads((Path(result["run_dir"]) / "metrics.json").read_text())["history"]
            n_train = round(n * 0.9)
            per[label] = min(h["time_s"] for h in history) / n_train * 1e3  # ms per training spectrum-epoch
            print(f"{stage:8s} {label:48s} {per[label]:.3f} ms per spectrum-epoch", flush=True)
        raw = yaml.safe_load(STUDIES[stage].read_text())
        tr = raw["config"]["training"]
        most = tr["epochs"] + tr.get("fine_tune_epochs", 0)
        n_study = round(raw["config"]["data"]["subset"]["n"] * (1 - raw["config"]["data"].get("val_fraction", 0.1)))
        mean_ms = sum(per.values()) / len(per)
        val = raw["config"]["data"].get("val_fraction", 0.1)
        spectrum_epochs_s = raw["max_trials"] * HYPERBAND_FRACTION * most * mean_ms / 1e3 * CONTENTION / 2  # per spectrum
        wall_min = n_study * spectrum_epochs_s / 60
        subset = round(TARGET_MIN * 60 / spectrum_epochs_s / (1 - val), -3)
        results[stage] = {
            "ms_per_spectrum_epoch": per,
            "mean_ms": mean_ms,
            "predicted_wall_min_2_workers": wall_min,
            "subset_for_target": subset,
        }
        print(
            f"{stage}: mean {mean_ms:.3f} ms; {raw['max_trials']} trials x {HYPERBAND_FRACTION} x {most} epochs x "
            f"{n_study} spectra x {CONTENTION} / 2 workers = {wall_min:.0f} min; config.data.subset.n for "
            f"{TARGET_MIN} min: {subset:.0f} (the file has {raw['config']['data']['subset']['n']})",
            flush=True,
        )
    return results


def record(plan: Plan) -> list[Path]:
    """Copy what the result tables read from ``plan.root`` and the study folders into ``plan.docs_dir``.

    The record is small enough to commit (study storages, ``hpo.train_best`` and ``fspnet.evaluate``
    summaries, the pruning table), so the page's tables can be rebuilt without the outputs: each
    study's ``study.db`` becomes ``<name>.db`` (SQLite's backup API: a consistent copy of a live
    WAL database), its ``best/summary.json`` ``<name>.train_best.json``, every evaluation's
    ``summary.json`` keeps its path below ``evaluation/``. Returns the files written.
    """
    import contextlib
    import shutil
    import sqlite3

    from runtools.io import atomic_path

    pairs: list[tuple[Path, Path]] = []
    for stage in ("decoder", "encoder"):
        folder = study_dir(plan, stage)
        pairs += [(folder / "study.db", plan.docs_dir / f"{folder.name}.db")]
        pairs += [(folder / "best" / "summary.json", plan.docs_dir / f"{folder.name}.train_best.json")]
    evals = plan.root / "evaluation"
    pairs += [(f, plan.docs_dir / "evaluation" / f.relative_to(evals)) for f in sorted(evals.glob("**/summary.json"))]
    pairs += [(plan.root / "bench_pruning" / "pruning.md", plan.docs_dir / "pruning.md")]
    written = []
    for src, dst in pairs:
        if not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            if src.suffix == ".db":
                with contextlib.closing(sqlite3.connect(src)) as a, contextlib.closing(sqlite3.connect(tmp)) as b:
                    a.backup(b)
            else:
                shutil.copyfile(src, tmp)
        written.append(dst)
    return written


def write_tables(plan: Plan, doc: Path = REPO / "docs" / "campaign.md") -> None:
    """Record what has run (:func:`record`), then put its result tables into ``doc`` (:mod:`campaign_tables`)."""
    import campaign_tables

    for path in record(plan):
        print(f"recorded {_rel(str(path))}")
    rec = plan.docs_dir
    evals = rec / "evaluation"
    decoder, encoder = (study_dir(plan, stage).name for stage in ("decoder", "encoder"))
    block = campaign_tables.render(
        # the earlier runs' storages, kept beside the record (docs/campaign.md says how each differed)
        studies={
            "fspnet_decoder, first run: no inference-time constraint, 20,000 spectra": rec / f"{decoder}_unconstrained.db",
            "fspnet_decoder, second run: 20,000 spectra": rec / f"{decoder}_20k.db",
            "fspnet_decoder, third run: the constraint misread by timing noise": rec / f"{decoder}_cost_noise.db",
            "fspnet_decoder, fourth run: no cosine schedule": rec / f"{decoder}_plateau.db",
            "fspnet_decoder, fifth run: the schedule tuned": rec / f"{decoder}_schedule_tuned.db",
            "fspnet_decoder": rec / f"{decoder}.db",
            "fspnet_encoder, first run: on val_loss, through the second decoder run's winner": rec / f"{encoder}_val_loss.db",
            "fspnet_encoder, second run: through the fourth decoder run's winner": rec / f"{encoder}_second.db",
            "fspnet_encoder": rec / f"{encoder}.db",
        },
        finals={"found decoder": rec / f"{decoder}.train_best.json", "found encoder": rec / f"{encoder}.train_best.json"},
        pruning=rec / "pruning.md",
        found_decoders={"found decoder": (rec / f"{decoder}.train_best.json", "found")},
        evals=evals,
        encoders={
            f"found, seeds {plan.seed}-{plan.seed + plan.seeds - 1} as one ensemble (shipped)": evals / "ensemble",
            f"found, seed {plan.seed}": evals / "found",
            **{f"found, seed {plan.seed + k}": evals / f"found-seed-{plan.seed + k}" for k in range(1, plan.seeds)},
            "FSP-Net default": evals / "default",
            "shipped before": evals / "shipped",
        },
    )
    campaign_tables.update_doc(doc, block)
    print(f"wrote the result tables into {doc}")


def main(argv: tp.Sequence[str] | None = None) -> int:
    """Parse the arguments, then print or run the campaign."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    parser.add_argument("--quick", action="store_true", help="tiny sizes under --root (tests the sequence)")
    parser.add_argument("--root", type=Path, default=None, help="campaign folder [outputs/campaign]")
    parser.add_argument("--data-dir", type=Path, default=None, help="training and held-out files [data/campaign]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data (held-out: +1) and the first training [0]")
    parser.add_argument("--seeds", type=int, default=None, help="seeds of every final training [2]")
    parser.add_argument("--n-train", type=int, default=None, help="training spectra [300000]")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the steps that use 2 [2]; 1 when other work shares the cores (idle OpenMP threads spin)",
    )
    parser.add_argument("--from", dest="first", default=None, help="first step to run")
    parser.add_argument("--to", dest="last", default=None, help="last step to run")
    parser.add_argument("--only", nargs="+", default=None, help="run only these steps")
    parser.add_argument(
        "--measure",
        type=Path,
        metavar="H5",
        default=None,
        help="instead: time epochs of the search spaces' corners on this dataset (sizing)",
    )
    parser.add_argument("--measure-n", type=int, default=2000, help="spectra for --measure [2000]")
    parser.add_argument(
        "--hyperband-fraction",
        action="store_true",
        help="instead: simulate the mean epochs per trial of the studies' Hyperband (sizing)",
    )
    parser.add_argument(
        "--measure-decoder",
        type=Path,
        default=None,
        help="decoder run the encoders of --measure train through (the decoder study's winner)",
    )
    parser.add_argument(
        "--tables",
        action="store_true",
        help="instead: write the result tables of what has run into docs/campaign.md (between its markers)",
    )
    args = parser.parse_args(argv)
    if args.hyperband_fraction:
        f = hyperband_fraction()
        print(
            f"Hyperband (1..30, eta 3), 48 TPE trials: mean epochs per trial / 30 = "
            f"{', '.join(f'{x:.2f}' for x in f)} (mean {sum(f) / len(f):.2f})"
        )
        return 0
    if args.measure is not None:
        import logging

        logging.basicConfig(level=logging.WARNING)
        root = (args.root or REPO / "outputs" / "campaign").resolve()
        result = measure(args.measure.resolve(), args.measure_n, root / "measure", args.measure_decoder)
        from runtools.io import write_json

        write_json(root / "measure" / "measure.json", result)
        return 0
    if args.quick:
        plan = quick_plan((args.root or Path("/tmp/fspnet-campaign-quick")).resolve())
    else:
        root = (args.root or REPO / "outputs" / "campaign").resolve()
        plan = Plan(root=root, data_dir=(args.data_dir or REPO / "data" / "campaign").resolve())
        if plan.data_dir != (REPO / "data" / "campaign").resolve():  # the study files read data/campaign/train.h5
            plan.study_sets = {stage: (f"config.data.path={plan.train_h5}",) for stage in plan.study_sets}
            plan.bench_sets = (f"config.data.path={plan.train_h5}",)
    plan.seed = args.seed
    plan.seeds = args.seeds or plan.seeds
    if args.tables:
        write_tables(plan)
        return 0
    plan.n_train = args.n_train or plan.n_train
    all_steps = steps(plan)
    if args.threads is not None:
        all_steps = [dataclasses.replace(st, threads=min(st.threads, args.threads)) for st in all_steps]
    names = [st.name for st in all_steps]
    for opt, value in (("--from", args.first), ("--to", args.last), *(("--only", v) for v in args.only or [])):
        if value is not None and value not in names:
            parser.error(f"{opt}: unknown step {value!r}; the steps are {', '.join(names)}")
    lo = names.index(args.first) if args.first else 0
    hi = names.index(args.last) + 1 if args.last else len(names)
    selected = [st for st in all_steps[lo:hi] if args.only is None or st.name in args.only]
    if args.dry_run:
        for st in selected:
            print(f"# {st.name}{': ' + st.note if st.note else ''}")
            print(st.shell())
        return 0
    run(plan, selected)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
