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
import os
import resource
import sys
import time

# Idle OpenMP threads sleep instead of spinning. On a CPU shared with other jobs a spinning
# thread waits for a partner that is not scheduled: 2 threads ran ~15x slower than 1 without it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from fspnet.config import from_dict  # noqa: E402
from fspnet.nets import build_network, decoder_config  # noqa: E402
from fspnet.train import _optimizer, _train_epoch  # noqa: E402


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
    t0, c0 = time.perf_counter(), time.process_time()
    loss = _train_epoch(model, losses, x, p, batch_size, optimizer, None, shuffle, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    out = {
        "device": str(device),
        "threads": threads,
        "n": n,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "spectra_per_s": round(n / seconds, 1),
        # CPU time of this process: on a machine shared with other jobs, wall time overstates the
        # cost; n / cpu_seconds * threads approximates the throughput on an idle machine
        "cpu_seconds": round(cpu_seconds, 2),
        "spectra_per_cpu_s": round(n / cpu_seconds, 1),
        "loss": round(loss, 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # whole process so far
        "load_average": round(os.getloadavg()[0], 1),
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
    print(
        f"decoder: {n_weights} weights; torch {torch.__version__}; python {sys.version.split()[0]}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {os.getloadavg()[0]:.1f}"
    )
    for b in args.batch_sizes:
        r = bench(args.n, b, device, args.threads)
        print(json.dumps(r))
        summary = f"{r['spectra_per_s']:9.1f} spectra/s  ({r['seconds']} s/epoch, peak RSS {r['peak_rss_mb']} MB)"
        print(f"batch {b:5d}: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
