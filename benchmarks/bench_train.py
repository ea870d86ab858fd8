"""Decoder training throughput: spectra/s over one epoch, and peak memory.

Runs the trainer's own epoch function (:func:`fspnet.train._train_epoch`) on the default
FSP-Net decoder (``fspnet.nets.decoder_config()``) with synthetic-shaped data held in memory:
100,000 spectra of 240 bins and 5 parameters, at batch sizes 60 (FSP-Net's) and 1024.

    python benchmarks/bench_train.py                 # 2 threads, CPU (the target machine)
    python benchmarks/bench_train.py --n 20000 --batch-sizes 60
    python benchmarks/bench_train.py --device cuda   # on a GPU: data stay on the device

Target on the 2-core CPU: at least 2,000 spectra/s at batch size 60.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
from torch.nn import functional as F

from fspnet.nets import build_network, decoder_config
from fspnet.train import _optimizer, _train_epoch
from fspnet.config import from_dict


def bench(n: int, batch_size: int, device: torch.device, threads: int) -> dict[str, float]:
    """Train the default decoder for one epoch of ``n`` spectra; return throughput and memory."""
    torch.manual_seed(0)
    p = torch.randn(n, 5, device=device)  # [N, P] z-scored parameters
    x = torch.rand(n, 240, device=device)  # [N, C] scaled log spectra
    model = build_network(decoder_config(), (5,)).to(device)
    tc = from_dict({"training": {"batch_size": batch_size}}).training
    optimizer, _ = _optimizer(model, tc, stage=0)
    shuffle = torch.Generator(device=device)
    shuffle.manual_seed(0)

    def losses(idx, x, p):
        return {"loss": F.mse_loss(model(p[idx]).flatten(1), x[idx])}

    # warm-up (allocator, cuDNN autotune, first-call overheads) on a few batches
    _train_epoch(model, losses, x[: 5 * batch_size], p[: 5 * batch_size], batch_size, optimizer, None, shuffle, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = _train_epoch(model, losses, x, p, batch_size, optimizer, None, shuffle, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {
        "device": str(device),
        "threads": threads,
        "n": n,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "spectra_per_s": round(n / seconds, 1),
        "loss": round(loss, 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="spectra in the epoch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[60, 1024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n_weights = sum(p.numel() for p in build_network(decoder_config(), (5,)).parameters())
    print(f"decoder: {n_weights} weights; torch {torch.__version__}; python {sys.version.split()[0]}")
    for b in args.batch_sizes:
        r = bench(args.n, b, device, args.threads)
        print(json.dumps(r))
        print(f"batch {b:5d}: {r['spectra_per_s']:9.1f} spectra/s  ({r['seconds']} s/epoch, peak RSS {r['peak_rss_mb']} MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
