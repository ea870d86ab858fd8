"""Rebuild the shipped pre-trained networks (``fspnet/pretrained/``) in one seeded command.

    python scripts/train_pretrained.py                 # the recipe behind the shipped weights
    python scripts/train_pretrained.py --install       # ... and copy the result into fspnet/pretrained/

Steps (each skipped when its output already exists, so an interrupted recipe continues):

1. ``fspnet.synthesize``: 300,000 training spectra (seed ``--seed``) and 2,000 held-out spectra
   (seed ``--seed + 1``), Poisson noise, the bundled NICER response, FSP-Net's parameter ranges
   (``configs/synthesize.yaml`` defaults);
2. ``fspnet.train --stage decoder``: FSP-Net's decoder without the GRU (``decoder_config(gru=False)``:
   the GRU costs ~4x per epoch on a CPU), batch 512, learning rate 2e-3;
3. ``fspnet.train --stage encoder`` through the frozen decoder: FSP-Net's encoder layout with a
   fourth conv block and half its filters (``encoder_config(filters=[8, 16, 16, 16])``: as fast
   per spectrum as three blocks, more accurate), batch 128, at most 100 epochs with the learning
   rate halved on plateaus, reconstruction loss plus ``latent_weight`` times the parameter loss
   (~80 CPU-minutes);
4. ``fspnet.evaluate`` on the held-out spectra (the README figures);
5. with ``--install``: :func:`fspnet.pretrained.install` copies the encoder run (which carries its
   decoder), its metrics, the evaluation summary, a README with the held-out figures and
   ``origin.json`` (this recipe's settings and the commits) into ``fspnet/pretrained/``.

The training is deterministic for a given seed, thread count and torch build; the recipe pins
one intra-op thread (``OMP_NUM_THREADS=1``) unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the recipe."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the training data and both trainings [0]")
    parser.add_argument("--n-train", type=int, default=300_000, help="training spectra [300000]")
    parser.add_argument("--n-heldout", type=int, default=2_000, help="held-out spectra [2000]")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "pretrained")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "pretrained", help="run directories and evaluation")
    parser.add_argument("--decoder-epochs", type=int, default=25)
    parser.add_argument("--encoder-epochs", type=int, default=100)
    parser.add_argument(
        "--encoder-filters", type=int, nargs="+", default=[8, 16, 16, 16], help="filters per conv block [8 16 16 16]"
    )
    parser.add_argument("--encoder-dense-width", type=int, default=120, help="width of the encoder's dense layers [120]")
    parser.add_argument("--decoder-batch-size", type=int, default=512)
    parser.add_argument("--encoder-batch-size", type=int, default=128)
    parser.add_argument("--decoder-lr", type=float, default=2e-3)
    parser.add_argument("--encoder-lr", type=float, default=1e-3)
    parser.add_argument("--latent-weight", type=float, default=0.1, help="weight of the parameter loss in the encoder stage")
    parser.add_argument("--device", default="cpu", help="training device (cpu, cuda); CPU results are the shipped ones")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads [1]")
    parser.add_argument("--eval-n-fit", type=int, default=200, help="held-out spectra that get fits in the evaluation")
    parser.add_argument("--eval-n-timing", type=int, default=8)
    parser.add_argument("--install", action="store_true", help="copy the result into fspnet/pretrained/")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from fspnet.config import load_config
    from fspnet.evaluate._evaluate import EvaluateOptions, evaluate
    from fspnet.synthesize import synthesize
    from fspnet.train import train

    args.data_dir.mkdir(parents=True, exist_ok=True)
    train_h5, heldout_h5 = args.data_dir / "train.h5", args.data_dir / "heldout.h5"
    for path, n, seed in ((train_h5, args.n_train, args.seed), (heldout_h5, args.n_heldout, args.seed + 1)):
        if not path.is_file():
            logging.info("synthesize %d spectra (seed %d) -> %s", n, seed, path)
            synthesize(None, n=n, seed=seed, out=path, progress=False)
    common = {
        "data.path": str(train_h5),
        "training.seed": args.seed,
        "training.lr_patience": 3,
        "training.patience": 8,
        "training.progress": False,
        "training.device": args.device,
    }
    dec_dir, enc_dir = args.out / "decoder", args.out / "encoder"
    stages = (
        ("decoder", dec_dir, {"decoder.architecture.gru": False, "training.epochs": args.decoder_epochs,
                              "training.batch_size": args.decoder_batch_size,
                              "training.learning_rate": args.decoder_lr}),
        ("encoder", enc_dir, {"encoder.decoder_run": str(dec_dir), "encoder.latent_weight": args.latent_weight,
                              "encoder.architecture.filters": list(args.encoder_filters),
                              "encoder.architecture.dense_width": args.encoder_dense_width,
                              "training.batch_size": args.encoder_batch_size,
                              "training.epochs": args.encoder_epochs, "training.learning_rate": args.encoder_lr}),
    )  # fmt: skip
    for stage, run_dir, extra in stages:
        # resume: continues an interrupted stage exactly, and returns at once for a finished one
        start = time.perf_counter()
        overrides = {**common, **extra, "stage": stage, "run_dir": str(run_dir), "resume": True}
        result = train(load_config(str(ROOT / "configs" / "fspnet.yaml"), overrides))
        logging.info("%s: %s after %d epochs (%.0f s)", stage, result["stopped"], result["epochs"], time.perf_counter() - start)
    eval_dir = args.out / "evaluation"
    summary = evaluate(
        enc_dir, heldout_h5, eval_dir,
        EvaluateOptions(n_fit=args.eval_n_fit, n_timing=args.eval_n_timing, progress=False),
    )  # fmt: skip
    if args.install:
        install(enc_dir, dec_dir, summary, args)
    return 0


def install(enc_dir: Path, dec_dir: Path, summary: dict, args: argparse.Namespace) -> None:
    """Install the encoder run (with its decoder) and the held-out figures into ``fspnet/pretrained/``
    through :func:`fspnet.pretrained.install`, with the recipe's settings as its origin."""
    from fspnet.pretrained import install as install_pretrained

    origin = {
        "made_by": "python scripts/train_pretrained.py --install",
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "install"},
    }
    slim = {k: v for k, v in summary.items() if k not in ("saliency",)}
    install_pretrained(
        enc_dir, ROOT / "fspnet" / "pretrained", origin=origin, decoder_run=dec_dir, readme=readme(summary, args), evaluation=slim
    )


def readme(s: dict, args: argparse.Namespace) -> str:
    """The README of ``fspnet/pretrained/``: recipe and held-out figures."""
    from fspnet.evaluate import GOALS

    lines = [
        "# Pre-trained FSP-Net networks",
        "",
        "An encoder run directory (`fspnet.train`) with its frozen decoder: load it with",
        "`fspnet.pretrained.load_pretrained()`, or `python -m fspnet.predict --pretrained --data F.h5`.",
        "",
        f"Recipe: `python scripts/train_pretrained.py --install` (seed {args.seed}, {args.n_train} training spectra,",
        f"decoder {args.decoder_epochs} epochs at lr {args.decoder_lr}, encoder {args.encoder_epochs} epochs at lr",
        f"{args.encoder_lr} with filters {list(args.encoder_filters)} and dense width {args.encoder_dense_width},",
        f"batches of {args.decoder_batch_size} (decoder) and {args.encoder_batch_size} (encoder), latent weight {args.latent_weight}, {args.threads} CPU thread(s)).",
        "",
        f"## Held-out figures ({s['n_spectra']} spectra, seed {args.seed + 1}; fits on {s['n_fit']})",
        "",
        f"Median |delta| against the true parameters, in % of each parameter's (log-)range (goal: {GOALS.recovery_text});",
        "the short and the traditional fit are on the fitted spectra.",
        "",
        "| parameter | encoder median abs. delta | encoder % | encoder scatter % | encoder + short fit % | traditional fit % |",
        "|---|---|---|---|---|---|",
    ]
    methods = s["recovery"]["methods"]
    for name, st in methods.get("encoder", {}).items():
        other = [f"{methods[m][name]['median_abs_delta_pct']:.2f}" if m in methods else "-" for m in ("encoder_fit", "fit")]
        lines.append(
            f"| {name} | {st['median_abs_delta']:.4g} | {st['median_abs_delta_pct']:.2f} | {st['scatter_pct']:.2f} | {' | '.join(other)} |"
        )
    lines += ["", "| reduced PGStat (0.3-10 keV) | median | 16th-84th pct |", "|---|---|---|"]
    labels = {
        "encoder": "(a) encoder",
        "encoder_fit": "(b) encoder + short fit",
        "fit": "(c) traditional fit",
        "true": "(d) true",
    }
    for key, v in s["pgstat"].items():
        lines.append(f"| {labels.get(key, key)} | {v['median']:.4g} | {v['p16']:.4g}-{v['p84']:.4g} |")
    t = s["timing"]
    if "speedup_encoder" in t:
        lines += [
            "",
            f"Encoder {t['encoder_s_per_spectrum'] * 1e6:.3g} us per spectrum; traditional fit {t['fit_s_per_spectrum']:.3g} s",
            f"per spectrum one at a time; speed-up {t['speedup_encoder']:.3g}x (same PGStat level {t['speedup_same_level']:.3g}x).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
