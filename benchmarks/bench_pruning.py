"""Does pruning pay? The decoder study with and without Hyperband, and TPE against random search.

Runs the same study file three times through the toolkit's own worker (``python -m hpo.run``),
each as its own Optuna study in its own SQLite file under ``--out``:

==========  ================  ================  =========================================
run         sampler           pruner            compared with
==========  ================  ================  =========================================
hb_tpe      the file's (TPE)  HyperbandPruner   nop_tpe (does pruning pay?)
nop_tpe     the file's (TPE)  NopPruner         the reference: its final best is the target
hb_random   RandomSampler     HyperbandPruner   hb_tpe (does the sampler pay?)
==========  ================  ================  =========================================

Every run has the same seed, search space, data subset and number of trials, and runs in one
worker process, so its trials are sequential and the sampler's choices reproducible. Two runs
go at once by default (``--parallel``), one per CPU core.

For each run the trials are taken in order; a trial costs the epochs it reported (a pruned
trial fewer than the maximum). The table gives the total epochs, the final best value, the
epochs spent until the best value first reached the target (the unpruned run's final best,
and within 1 % and 5 % of it) as a fraction of the unpruned run's total, and each run's best
value at the smallest run's total epoch budget. The plot (PNG) is best value against
cumulative epochs. Goal: Hyperband reaches the unpruned run's best with <= 40 % of its
epochs.

Usage::

    # the campaign's run (docs/campaign.md): ~45 min on a quiet 2-core machine
    python benchmarks/bench_pruning.py --trials 40 --subset 10000 --max-epochs 27
    # a quick check that it works (a minute)
    python benchmarks/bench_pruning.py --trials 4 --subset 600 --max-epochs 3 --out /tmp/bench_pruning
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time
import typing as tp
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: run name -> (sampler override or None for the file's, pruner)
RUNS: dict[str, tuple[str | None, str]] = {
    "hb_tpe": (None, "HyperbandPruner"),
    "nop_tpe": (None, "NopPruner"),
    "hb_random": ("RandomSampler", "HyperbandPruner"),
}
REFERENCE = "nop_tpe"
TOLERANCES = (0.0, 0.01, 0.05)


@dataclasses.dataclass
class Curve:
    """One run's trials in order: epochs each cost and the value of each completed trial."""

    name: str
    epochs: list[int]  # epochs reported by each trial, in trial order
    values: list[float | None]  # the trial's value when it completed, None when pruned/failed

    @property
    def cumulative_epochs(self) -> list[int]:
        out, total = [], 0
        for e in self.epochs:
            total += e
            out.append(total)
        return out

    @property
    def best_so_far(self) -> list[float]:
        """Best completed value after each trial (inf before the first completed one)."""
        out, best = [], math.inf
        for v in self.values:
            if v is not None and v < best:
                best = v
            out.append(best)
        return out

    @property
    def total_epochs(self) -> int:
        return sum(self.epochs)

    @property
    def best(self) -> float:
        return self.best_so_far[-1] if self.values else math.inf

    def epochs_to_reach(self, target: float) -> int | None:
        """Cumulative epochs at the end of the first trial whose value is <= ``target`` (None: never)."""
        for cum, best in zip(self.cumulative_epochs, self.best_so_far):
            if best <= target:
                return cum
        return None

    def best_at_budget(self, epochs: int) -> float:
        """Best completed value among the trials that ended within ``epochs`` cumulative epochs."""
        best = math.inf
        for cum, b in zip(self.cumulative_epochs, self.best_so_far):
            if cum > epochs:
                break
            best = b
        return best


def summarise(curves: tp.Mapping[str, Curve], reference: str = REFERENCE) -> dict[str, tp.Any]:
    """The numbers of the table: per run, totals, epochs to the reference's best, best at equal budget.

    Args:
        curves: run name -> its curve; must hold ``reference``.
        reference: the unpruned run whose final best value is the target.

    Returns:
        ``{"reference", "target", "budget", "runs": {name: {...}}}`` where ``budget`` is the
        smallest total epochs of any run and each run has ``trials``, ``complete``,
        ``total_epochs``, ``best``, ``best_at_budget`` and, per tolerance, ``epochs_to_target``
        and ``fraction_of_reference_epochs``.
    """
    if reference not in curves:
        raise ValueError(f"the reference run {reference!r} is missing; runs are {', '.join(curves)}")
    ref = curves[reference]
    target = ref.best
    budget = min(c.total_epochs for c in curves.values())
    runs: dict[str, tp.Any] = {}
    for name, c in curves.items():
        reach = {}
        for tol in TOLERANCES:
            e = c.epochs_to_reach(target * (1 + tol)) if math.isfinite(target) else None
            frac = e / ref.total_epochs if e is not None and ref.total_epochs else None
            reach[f"{tol:g}"] = {"epochs_to_target": e, "fraction_of_reference_epochs": frac}
        runs[name] = {
            "trials": len(c.epochs),
            "complete": sum(v is not None for v in c.values),
            "total_epochs": c.total_epochs,
            "best": c.best,
            "best_at_budget": c.best_at_budget(budget),
            "reach": reach,
        }
    return {"reference": reference, "target": target, "budget": budget, "runs": runs}


def format_table(summary: dict[str, tp.Any]) -> str:
    """A Markdown table of :func:`summarise`'s numbers."""

    def num(v: float | None) -> str:
        return "-" if v is None or not math.isfinite(v) else f"{v:.4g}"

    def reach(r: dict[str, tp.Any]) -> str:
        e, f = r["epochs_to_target"], r["fraction_of_reference_epochs"]
        return "not reached" if e is None else f"{e} ({100 * f:.0f} %)"

    head = ["run", "trials (complete)", "epochs", "best", f"best at {summary['budget']} epochs"]
    head += [f"epochs to target{'' if tol == 0 else f' +{100 * tol:g} %'}" for tol in TOLERANCES]
    lines = [
        (
            f"target: {num(summary['target'])} (final best of {summary['reference']}); "
            "epochs to target in % of the reference run's epochs"
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, r in summary["runs"].items():
        row = [name, f"{r['trials']} ({r['complete']})", str(r["total_epochs"]), num(r["best"]), num(r["best_at_budget"])]
        row += [reach(r["reach"][f"{tol:g}"]) for tol in TOLERANCES]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(curves: tp.Mapping[str, Curve], target: float, path: Path) -> None:
    """Best value against cumulative epochs, one step line per run, the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runtools.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, c), style in zip(curves.items(), ("-", "--", ":", "-.")):
        pts = [(e, b) for e, b in zip(c.cumulative_epochs, c.best_so_far) if math.isfinite(b)]
        if pts:
            xs, ys = zip(*pts)  # runs that share their first trials overlap: the line styles tell them apart
            ax.step(xs, ys, where="post", ls=style, lw=2, label=f"{name} ({c.total_epochs} epochs)")
    if math.isfinite(target):
        ax.axhline(target, ls="--", c="grey", lw=1, label="target (unpruned best)")
    ax.set(xlabel="cumulative training epochs", ylabel="best validation loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def study_overrides(name: str, args: argparse.Namespace, ft_epochs: int) -> list[str]:
    """The study-file overrides (``--set`` items of ``hpo.run``) that make run ``name``."""
    sampler, pruner = RUNS[name]
    sets = [f"pruner={pruner}"] + ([f"sampler={sampler}"] if sampler else [])
    sets += [
        f"name={args.prefix}{name}",
        f"output_dir={args.out}",
        "storage=null",
        f"max_trials={args.trials}",
        "timeout=null",
        f"seed={args.seed}",
        f"config.data.subset={{n: {args.subset}, mode: first, seed: 0}}",
        f"config.training.epochs={args.max_epochs - ft_epochs}",
        f"config.training.fine_tune_epochs={ft_epochs}",
    ]
    if pruner == "HyperbandPruner":
        sets.append(f"pruner.configs={{min_resource: 1, max_resource: {args.max_epochs}, reduction_factor: 3}}")
    return [*sets, *args.set]


def run_one(name: str, args: argparse.Namespace, ft_epochs: int) -> tuple[str, float]:
    """Run one study to its end with ``python -m hpo.run``; returns (name, wall seconds)."""
    log = Path(args.out) / f"{args.prefix}{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "--study",
        str(args.study),
        "--n-trials",
        str(args.trials),
        "--no-collate",
        "--no-progress",
    ]
    for item in study_overrides(name, args, ft_epochs):
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env.pop("HPO_STORAGE", None)  # each run keeps its own SQLite file
    # the sampler's seed derives from the study seed and the worker key (host:pid by default):
    # one fixed key gives every run the same sampler seed
    env["HPO_WORKER_KEY"] = "bench_pruning"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError(f"{name}: python -m hpo.run exited with {rc}; see {log}")
    return name, time.perf_counter() - t0


def read_curve(name: str, args: argparse.Namespace, ft_epochs: int) -> Curve:
    """The trials of one finished run, from its storage, in trial order."""
    import optuna

    from hpo.study import load_study_config, open_study

    cfg = load_study_config(args.study, overrides=study_overrides(name, args, ft_epochs), check_trainable=False)
    trials = sorted(open_study(cfg).get_trials(deepcopy=False), key=lambda t: t.number)
    return Curve(
        name,
        epochs=[len(t.intermediate_values) for t in trials],
        values=[float(t.value) if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None else None for t in trials],
    )


def main(argv: tp.Sequence[str] | None = None) -> int:
    """Parse the arguments, run the studies, print the table and draw the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "fspnet_decoder.yaml")
    parser.add_argument("--trials", type=int, default=40, help="trials of every run [40]")
    parser.add_argument("--subset", type=int, default=10_000, help="spectra of the data file used (train + val) [10000]")
    parser.add_argument("--max-epochs", type=int, default=27, help="epochs of a trial that is never pruned [27]")
    parser.add_argument("--seed", type=int, default=0, help="study seed of every run [0]")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--parallel", type=int, default=2, help="runs at once, one worker process each [2]")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker [1]")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_pruning", help="studies, logs, table, JSON")
    parser.add_argument("--png", type=Path, default=None, help="plot file [OUT/pruning.png]")
    parser.add_argument("--prefix", default="bench_pruning_", help="study name prefix")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra study-file override for every run (e.g. config.data.path=...)",
    )
    parser.add_argument("--analyse-only", action="store_true", help="read the finished runs, run nothing")
    args = parser.parse_args(argv)
    if REFERENCE not in args.runs:
        parser.error(f"--runs must include the reference {REFERENCE}")
    if args.max_epochs < 1 or args.trials < 1 or args.subset < 2:
        parser.error("--max-epochs and --trials must be >= 1 and --subset >= 2")
    args.out = args.out.resolve()
    png = args.png or args.out / "pruning.png"

    import yaml

    raw = yaml.safe_load(args.study.read_text())
    cfg_train = (raw.get("config") or {}).get("training") or {}
    study_total = int(cfg_train.get("epochs", 150)) + int(cfg_train.get("fine_tune_epochs", 0))
    # the worst-N stage keeps its share of the epochs (at least one when the file has one)
    ft_epochs = 0
    if cfg_train.get("fine_tune_epochs") and args.max_epochs > 1:
        ft_epochs = max(1, round(args.max_epochs * int(cfg_train["fine_tune_epochs"]) / study_total))

    if not args.analyse_only:
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            for name, wall in pool.map(lambda n: run_one(n, args, ft_epochs), args.runs):
                print(f"{name}: {args.trials} trials in {wall:.0f} s", flush=True)
    curves = {name: read_curve(name, args, ft_epochs) for name in args.runs}
    summary = summarise(curves)
    summary["settings"] = {
        "study": str(args.study),
        "trials": args.trials,
        "subset": args.subset,
        "max_epochs": args.max_epochs,
        "fine_tune_epochs": ft_epochs,
        "seed": args.seed,
        "extra": list(args.set),
    }
    summary["curves"] = {n: dataclasses.asdict(c) for n, c in curves.items()}
    from runtools.io import write_json, write_text

    table = format_table(summary)
    write_json(args.out / "pruning.json", summary)
    write_text(args.out / "pruning.md", table + "\n")
    plot(curves, summary["target"], png)
    print(table)
    print(f"plot: {png}\nnumbers: {args.out / 'pruning.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
