"""Decoder training throughput, this project vs the original FSP-Net code, side by side.

Both train FSP-Net's default decoder (217,854 weights: 5 parameters -> 240 bins, five SELU
linear layers with two shortcuts, a 2-layer bidirectional GRU of hidden size 1, a last linear
layer) with an MSE loss and AdamW on the same in-memory data (synthetic-shaped: spectra in
[0, 1], z-scored parameters), one epoch at a time:

* **ours**: the trainer's own epoch function (:func:`fspnet.train._train_epoch`) on
  ``fspnet.nets.decoder_config()``, data resident on the device;
* **reference**: the way FSP-Net trains today, through netloader 3.12.1 (FSP-Net's author's
  library, a test dependency): ``netloader.network.Network`` built from FSP-Net's own decoder
  file (``network_configs/Decoder V10.json`` in EthanTreg/Spectrum-Machine-Learning, the same
  network in netloader's format), ``netloader.architectures.Decoder`` (its AdamW and MSE loss)
  and its epoch loop (``_train_val``: a shuffled ``DataLoader`` over a netloader
  ``BaseDataset``, per-sample indexing and collation, ``.item()`` per batch).

The machine may be shared with other jobs, so every measurement is repeated (best of
``--repeats``), ours and the reference interleaved, and both wall-clock and process-CPU
throughput are reported; the ratio is ours / reference.

    python benchmarks/bench_train.py                       # batch 60 and 1024, 1 thread, CPU
    python benchmarks/bench_train.py --n 5000 --repeats 1  # quick look
    python benchmarks/bench_train.py --device cuda --no-reference --batch-sizes 60 1024 4096

Target on the 2-core CPU: ours at least 3x the reference at batch 60 and at batch 1024.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import resource
import sys
import tempfile
import time
import typing as tp
import warnings

# Idle OpenMP threads sleep instead of spinning. On a CPU shared with other jobs a spinning
# thread waits for a partner that is not scheduled: 2 threads ran ~15x slower than 1 without it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's fspnet

from fspnet.config import from_dict  # noqa: E402
from fspnet.nets import build_network, decoder_config  # noqa: E402
from fspnet.train import _optimizer, _train_epoch  # noqa: E402

N_PARAMS, N_BINS = 5, 240

# FSP-Net's default decoder in netloader's format, as FSP-Net ships it
# (EthanTreg/Spectrum-Machine-Learning, network_configs/Decoder V10.json).
FSPNET_DECODER_V10 = {
    "net": {"description": "Same as V8 but using Netloader", "checkpoints": 1, "Linear": {"dropout": 0}},
    "layers": [
        {"type": "Linear", "factor": 0.5, "dropout": 0},
        {"type": "Linear", "factor": 0.5, "dropout": 0},
        {"type": "Linear", "factor": 1},
        {"type": "Checkpoint"},
        {"type": "Linear", "factor": 1, "dropout": 0},
        {"type": "Checkpoint"},
        {"type": "Linear", "factor": 1},
        {"type": "Shortcut", "layer": 0},
        {"type": "Shortcut", "layer": 1},
        {"type": "Reshape", "shape": [1, -1]},
        {"type": "Recurrent", "bidirectional": "mean"},
        {"type": "Reshape", "shape": [-1]},
        {"type": "Linear", "factor": 1},
        {"type": "Reshape", "shape": [1, -1]},
    ],
}


def _data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, N_BINS, generator=gen)  # [N, C] scaled log spectra
    p = torch.randn(n, N_PARAMS, generator=gen)  # [N, P] z-scored parameters
    return x.to(device), p.to(device)


def _timed(run: tp.Callable[[], tp.Any], device: torch.device) -> tuple[float, float, tp.Any]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0, out


class Ours:
    """The trainer's epoch function on the default decoder; data resident on ``device``."""

    name = "ours"

    def __init__(self, n: int, batch_size: int, device: torch.device) -> None:
        torch.manual_seed(0)
        self.n, self.batch_size, self.device = n, batch_size, device
        self.x, self.p = _data(n, device)
        self.model = build_network(decoder_config(), (N_PARAMS,), (N_BINS,)).to(device)
        tc = from_dict({"training": {"batch_size": batch_size}}).training
        self.optimizer, _ = _optimizer(self.model, tc, stage=0)
        self.shuffle = torch.Generator(device=device)
        self.shuffle.manual_seed(0)
        self.weights = sum(w.numel() for w in self.model.parameters())
        # warm-up (allocator, cuDNN autotune, first-call overheads) on a few batches
        self._epoch(5 * batch_size)

    def _losses(self, idx: torch.Tensor, x: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(self.model(p[idx]).flatten(1), x[idx])}

    def _epoch(self, n: int | None = None) -> float | None:
        x, p = (self.x, self.p) if n is None else (self.x[:n], self.p[:n])
        return _train_epoch(self.model, self._losses, x, p, self.batch_size, self.optimizer, None, self.shuffle,
                            progress=False)  # fmt: skip

    def epoch(self) -> tuple[float, float, float]:
        """Seconds, CPU seconds and mean loss of one epoch over the ``n`` spectra."""
        seconds, cpu_seconds, loss = _timed(self._epoch, self.device)
        return seconds, cpu_seconds, float(loss)


class Reference:
    """FSP-Net's training through netloader 3.12.1: its Network, Decoder architecture and loop."""

    name = "reference"

    def __init__(self, n: int, batch_size: int, device: torch.device, learning_rate: float) -> None:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            # netloader warns about the Python version on import, past any filter set here
            from netloader.architectures import Decoder
            from netloader.data import BaseDataset, loader_init
            from netloader.network import Network
        logging.getLogger("netloader").setLevel(logging.ERROR)

        class _Spectra(BaseDataset):  # FSP-Net's SpectrumDataset: params low, spectra high
            def __init__(self, params: torch.Tensor, spectra: torch.Tensor) -> None:
                super().__init__()
                self.low_dim, self.high_dim = params, spectra

        torch.manual_seed(0)
        self.n, self.device = n, device
        x, p = _data(n, torch.device("cpu"))  # FSP-Net's loaders collate on the CPU
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "decoder.json"), "w") as f:
                json.dump(FSPNET_DECODER_V10, f)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = Network("decoder", tmp, [N_PARAMS], [1, N_BINS])
        self.weights = sum(w.numel() for w in net.parameters())
        # save_num 0: nothing written; verbose None: no printing inside the timed loop
        self.arch = Decoder(0, "", net, learning_rate=learning_rate, verbose=None).to(device)
        self.loader = loader_init(_Spectra(p, x.unsqueeze(1)), batch_size=batch_size, ratios=(1,))[0]
        warm = loader_init(_Spectra(p[: 5 * batch_size], x[: 5 * batch_size].unsqueeze(1)), batch_size=batch_size,
                           ratios=(1,))[0]  # fmt: skip
        self._epoch(warm)

    def _epoch(self, loader: tp.Any = None) -> float:
        self.arch.train(True)
        return self.arch._train_val(loader or self.loader)

    def epoch(self) -> tuple[float, float, float]:
        seconds, cpu_seconds, loss = _timed(self._epoch, self.device)
        return seconds, cpu_seconds, float(loss)


def count_copies(ours: Ours) -> dict[str, int]:
    """Host<->device copies during one epoch of ``ours`` on CUDA, counted by torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        ours.epoch()
    counts = {"HtoD": 0, "DtoH": 0}
    for event in prof.events():
        for kind in counts:
            if "Memcpy" in event.name and kind in event.name:
                counts[kind] += 1
    return counts


def bench(
    n: int, batch_size: int, device: torch.device, repeats: int, reference: bool, copies: bool = False
) -> dict[str, tp.Any]:
    """Best of ``repeats`` epochs for ours and (interleaved) the reference at one batch size."""
    lr = from_dict({}).training.learning_rate
    runners: list[tp.Any] = [Ours(n, batch_size, device)]
    if reference:
        runners.append(Reference(n, batch_size, device, lr))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for r in runners:  # interleaved: a burst of load from other jobs hits both
            seconds, cpu_seconds, loss = r.epoch()
            b = best.setdefault(r.name, {"seconds": seconds, "cpu_seconds": cpu_seconds, "loss": loss})
            b["seconds"], b["cpu_seconds"], b["loss"] = min(b["seconds"], seconds), min(b["cpu_seconds"], cpu_seconds), loss
    out: dict[str, tp.Any] = {"device": str(device), "threads": torch.get_num_threads(), "n": n,
                              "batch_size": batch_size, "repeats": repeats}  # fmt: skip
    for r in runners:
        b = best[r.name]
        out[r.name] = {
            "weights": r.weights,
            "seconds": round(b["seconds"], 3),
            "spectra_per_s": round(n / b["seconds"], 1),
            # CPU time of this process: on a machine shared with other jobs, wall time overstates
            # the cost; n / cpu_seconds approximates the throughput of one idle core per thread
            "cpu_seconds": round(b["cpu_seconds"], 3),
            "spectra_per_cpu_s": round(n / b["cpu_seconds"], 1),
            "last_loss": round(b["loss"], 5),
        }
    if reference:
        out["ratio"] = round(out["ours"]["spectra_per_s"] / out["reference"]["spectra_per_s"], 2)
        out["ratio_cpu"] = round(out["ours"]["spectra_per_cpu_s"] / out["reference"]["spectra_per_cpu_s"], 2)
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if copies:
            out["copies_per_epoch"] = count_copies(runners[0])
            out["batches_per_epoch"] = -(-n // batch_size)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # whole process so far
    out["load_average"] = round(os.getloadavg()[0], 1)
    return out


def _line(r: dict[str, tp.Any]) -> str:
    ours = r["ours"]
    text = f"batch {r['batch_size']:5d}: ours {ours['spectra_per_s']:9.1f} spectra/s ({ours['spectra_per_cpu_s']:9.1f}/CPU-s)"
    if "reference" in r:
        ref = r["reference"]
        text += (f" | reference {ref['spectra_per_s']:8.1f} ({ref['spectra_per_cpu_s']:8.1f}/CPU-s)"
                 f" | ratio {r['ratio']:5.2f}x (CPU {r['ratio_cpu']:5.2f}x)")  # fmt: skip
    if "peak_cuda_mb" in r:
        text += f" | peak GPU {r['peak_cuda_mb']} MB"
    if "copies_per_epoch" in r:
        text += f" | host<->device copies/epoch {r['copies_per_epoch']} over {r['batches_per_epoch']} batches"
    return text + f" [load {r['load_average']}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_240, help="spectra per epoch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[60, 1024])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per runner; the best counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="time ours only (the reference needs netloader, a test dependency)",
    )
    parser.add_argument("--count-copies", action="store_true", help="on CUDA: profile host<->device copies per epoch")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}; python {sys.version.split()[0]}; {args.threads} thread(s); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {os.getloadavg()[0]:.1f}; "
          f"{args.n} spectra per epoch, best of {args.repeats}", flush=True)  # fmt: skip
    results = []
    for b in args.batch_sizes:
        r = bench(args.n, b, device, args.repeats, args.reference, args.count_copies)
        results.append(r)
        print(json.dumps(r))
        print(_line(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
