"""Inference time of encoder run directories against a reference one, timed in alternation.

    python benchmarks/bench_encoders.py REFERENCE RUN [RUN ...] [--data F.h5] [--batch 256] [--threads 1]

Each run's network (an ensemble's members together) and the reference's run on the same batch
of ``--data``'s spectra in alternating pairs (:func:`fspnet.nets.relative_cost`: the median of
31 pairs' ratios), so load on a shared machine cancels out of the ratio; the absolute µs per
spectrum (fastest of the pairs) is printed beside it, for this machine at this moment only.

Example (the campaign's shipped ensemble against one of its seeds)::

    python benchmarks/bench_encoders.py outputs/fspnet_encoder/best/seed-0 fspnet/pretrained \
        --data data/campaign/heldout.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _fastest_us(net: torch.nn.Module, x: torch.Tensor, repeats: int = 31) -> float:
    from fspnet.nets._cost import _forward_s  # the same timer relative_cost uses

    with torch.no_grad():
        net(x)
        best = min(_forward_s(net, x) for _ in range(repeats))
    return 1e6 * best / len(x)


def main(argv: list[str] | None = None) -> int:
    from fspnet.data import read_dataset
    from fspnet.nets import relative_cost
    from fspnet.rundir import load_run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", help="encoder run directory the others are timed against")
    p.add_argument("runs", nargs="+", help="encoder run directories (or folders of shipped networks)")
    p.add_argument("--data", default="data/campaign/heldout.h5", help="spectra to time on")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref = load_run(args.reference)
    spectra = torch.as_tensor(read_dataset(args.data).spectra[: args.batch])
    x = ref.transforms.spectra(spectra).float()
    print(f"{args.batch} spectra of {args.data}, {args.threads} torch thread(s)")
    print(f"{'run':<48} {'weights':>9} {'µs/spectrum':>12} {'× reference':>12}")
    for path in [args.reference, *args.runs]:
        run = ref if path == args.reference else load_run(path)
        weights = sum(q.numel() for q in run.network.parameters())
        ratio = 1.0 if run is ref else relative_cost(run.network, ref.network, x)
        print(f"{path:<48} {weights:>9,} {_fastest_us(run.network, x):>12.1f} {ratio:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
