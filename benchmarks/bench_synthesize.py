"""Speed of the native generator against the same spectra made with XSPEC's model library.

    python benchmarks/bench_synthesize.py [--n 100000] [--xspec-n 300] [--workers 2 | --workers 1 --threads 2]
        [--backend-n 1000] [--backend-workers N_CORES] [--backend-config configs/synthesize_xspec.yaml]

Native: :class:`fspnet.synthesize.Synthesizer` end to end (draws, ``tbabs(simplcutx(ezdiskbb))``
on the 2000-bin grid, folding through the bundled NICER response into 240 bins, Poisson noise,
rejection below 1e4 counts) for ``--n`` accepted spectra.

XSPEC: the same parameters through XSPEC 6.35's own models via ``xspectrampoline``
(``tbabs * simpl(diskbb)``: XSPEC's library has neither simplcutx nor the ezdiskbb data file,
so the nearest XSPEC chain is used), one spectrum per call as PyXspec/fakeit would, on the same
grid, folded by the same matrix with the same noise. An XSPEC-based generator (FSP-Net's
fakeit loop) evaluates every draw, so the main ratio is the time for the same accepted
spectra: ``(draws / XSPEC rate) / native time``; the ratio per model evaluation (which leaves
out the native prescreen's saving) is printed too, end to end (worker processes' start-up
included: ~1.5 CPU-s each for importing torch and loading the response) and as the marginal
cost (``--steady-n`` accepted spectra in one warmed process on one thread, the way the XSPEC
loop is timed after its library is loaded: the target, >= 50x per CPU-second).
XSPEC's loop runs on one torch thread (folding one spectrum per call).

XSPEC backend: the generator itself with ``model.backend: xspec`` (``--backend-config``,
``tbabs*(diskbb+powerlaw)`` by default) for ``--backend-n`` accepted spectra, with
``--backend-workers`` processes (default: every core), printed beside the native generator's
spectra/s per CPU-second.

Prints spectra/s, the ratio, wall time for ``--n`` spectra and peak memory (tracemalloc for
Python/numpy allocations, ru_maxrss for the whole process including torch). ``--threads 2``
is torch's intra-op parallelism in one process; ``--workers 2`` runs two processes of one
thread each instead (same output, and robust when other jobs share the cores). Rates are also
given per CPU-second (user+system time of every process), which a shared machine distorts less
than wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc

# Idle OpenMP threads sleep instead of spinning (see bench_train.py): on a CPU shared with
# other jobs a spinning thread burns CPU-seconds that would be charged to either side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's fspnet


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _native(n: int, chunk_size: int, seed: int, workers: int) -> tuple[float, float, dict, np.ndarray]:
    from fspnet.synthesize import Synthesizer

    gen = Synthesizer({"seed": seed, "chunk_size": chunk_size})
    gen.run(min(n, 256), progress=False)  # warm the grid caches and the allocator
    cpu, start = _cpu_s(), time.perf_counter()
    ds = gen.run(n, progress=True, workers=workers)
    return time.perf_counter() - start, _cpu_s() - cpu, ds.source, ds.params


def _native_steady(n: int, chunk_size: int, seed: int) -> tuple[float, int]:
    """(CPU s, model evaluations) of ``n`` accepted spectra in this process on one thread,
    warmed: the marginal cost per model evaluation, without a worker's fixed start-up
    (~1.5 CPU-s: importing torch, loading the response), as XSPEC's library load is left out."""
    from fspnet.synthesize import Synthesizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = Synthesizer({"seed": seed, "chunk_size": chunk_size})
        gen.run(min(n, 256), progress=False)
        cpu = _cpu_s()
        ds = gen.run(n, progress=False, workers=1)
        return _cpu_s() - cpu, int(ds.source["evaluated"])
    finally:
        torch.set_num_threads(threads)


def _xspec(params: np.ndarray, seed: int) -> tuple[float, float, float]:
    """(wall s, CPU s, median |native - XSPEC| / XSPEC over bins with > 10 counts) for ``params``."""
    from fspnet.physics import DiskBB, Simpl, TBabs, energy_grid
    from fspnet.physics._xspec import xspec_model
    from fspnet.response import Folder

    edges = energy_grid()
    e = edges.numpy()
    folder = Folder(None, edges)
    rng = np.random.default_rng(seed)
    xspec_model("tbabs", e, [1.0])  # load the library and set abundances before timing
    # One spectrum per call: torch threads cannot help the folding of one row, and idle
    # OpenMP threads would spin (CPU-seconds charged to XSPEC) on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu, start = _cpu_s(), time.perf_counter()
    out = []
    for nh, gamma, fsc, kt, norm in params:
        disk = xspec_model("diskbb", e, [kt]) * norm
        comp = xspec_model("simpl", e, [gamma, fsc, 1.0], flux_in=disk)
        flux = xspec_model("tbabs", e, [nh]) * comp
        rate = folder.counts_rate(torch.from_numpy(flux).unsqueeze(0)).numpy()
        out.append(rng.poisson(np.clip(rate * 1000.0, 0, 1e15)))
    elapsed, cpu = time.perf_counter() - start, _cpu_s() - cpu
    torch.set_num_threads(threads)
    # Like-for-like accuracy check: the native implementations of the same XSPEC chain.
    native = TBabs() * Simpl(DiskBB())
    with torch.no_grad():
        sub = torch.as_tensor(params[:50])
        nat = folder.counts_rate(native(edges, sub)).numpy() * 1000.0
    ref = []
    for nh, gamma, fsc, kt, norm in params[:50]:
        flux = xspec_model("tbabs", e, [nh]) * xspec_model(
            "simpl", e, [gamma, fsc, 1.0], flux_in=xspec_model("diskbb", e, [kt]) * norm
        )
        ref.append(folder.counts_rate(torch.from_numpy(flux).unsqueeze(0)).numpy()[0] * 1000.0)
    ref = np.array(ref)
    ok = ref > 10
    return elapsed, cpu, float(np.median(np.abs(nat[ok] - ref[ok]) / ref[ok]))


def _xspec_backend(n: int, config: str, seed: int, workers: int) -> tuple[float, float, dict]:
    """(wall s, CPU s, source) of the generator with the xspec backend for ``n`` accepted spectra."""
    from fspnet.synthesize import Synthesizer, load_synthesize_config

    gen = Synthesizer(load_synthesize_config(config, {"seed": seed, "chunk_size": 64}))
    gen.run(8, progress=False)  # load XSPEC's library and its tables before timing
    cpu, start = _cpu_s(), time.perf_counter()
    ds = gen.run(n, progress=True, workers=workers)
    return time.perf_counter() - start, _cpu_s() - cpu, ds.source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="accepted native spectra")
    parser.add_argument("--xspec-n", type=int, default=300, help="spectra through XSPEC")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--workers", type=int, default=2, help="processes of one torch thread each (1: one process with --threads)"
    )
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steady-n", type=int, default=20_000, help="accepted spectra for the per-evaluation figure (one process, one thread)"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--backend-n", type=int, default=1000, help="accepted spectra from the xspec backend (0: skip)")
    parser.add_argument(
        "--backend-workers", type=int, default=os.cpu_count() or 1, help="processes of the xspec backend [every core]"
    )
    parser.add_argument("--backend-config", default=os.path.join(root, "configs", "synthesize_xspec.yaml"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tracemalloc.start()
    native_s, native_cpu, source, params = _native(args.n, args.chunk_size, args.seed, args.workers)
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Peak RSS of this process and of the largest worker (kB on Linux).
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    kids_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    draws, evaluated = source["draws"], source["evaluated"]
    steady_cpu, steady_evaluated = _native_steady(args.steady_n, args.chunk_size, args.seed + 1)

    try:
        xspec_s, xspec_cpu, agree = _xspec(params[: args.xspec_n], args.seed)
        xspec_rate, xspec_cpu_rate = args.xspec_n / xspec_s, args.xspec_n / xspec_cpu
    except ImportError as e:  # xspectrampoline is a dev extra
        xspec_rate = xspec_cpu_rate = agree = float("nan")
        print(f"XSPEC library unavailable ({e}); native figures only")

    native_acc = args.n / native_s
    native_draw = draws / native_s
    mode = f"{args.workers} worker processes x 1 thread" if args.workers > 1 else f"1 process x {args.threads} torch threads"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {mode}, torch {torch.__version__}"
    )
    print(
        f"native : {args.n} accepted spectra ({draws} draws, acceptance {args.n / draws:.2f}) in {native_s:.1f} s wall, {native_cpu:.1f} CPU-s"
    )
    print(
        f"native : {native_acc:,.0f} accepted spectra/s, {native_draw:,.0f} evaluated spectra/s (wall); "
        f"{draws / native_cpu:,.0f} evaluated spectra per CPU-s"
    )
    print(
        f"xspec  : {xspec_rate:,.0f} evaluated spectra/s (wall), {xspec_cpu_rate:,.0f} per CPU-s "
        f"({args.xspec_n} spectra, tbabs*simpl(diskbb), one per call)"
    )
    print(
        f"native : model evaluated for {evaluated} of the {draws} draws (the rest failed the prescreen): "
        f"{evaluated / native_s:,.0f} model evaluations/s (wall), {evaluated / native_cpu:,.0f} per CPU-s"
    )
    print(
        f"ratio  : {native_draw / xspec_rate:,.1f}x wall, {draws / native_cpu / xspec_cpu_rate:,.1f}x per CPU-s "
        f"(time for the same accepted spectra: XSPEC evaluating every draw vs native; target >= 50x)"
    )
    print(
        f"ratio  : {evaluated / native_s / xspec_rate:,.1f}x wall, {evaluated / native_cpu / xspec_cpu_rate:,.1f}x per CPU-s "
        f"(per model evaluation, without the prescreen's saving, end to end: {mode}, their start-up included)"
    )
    print(
        f"ratio  : {steady_evaluated / steady_cpu / xspec_cpu_rate:,.1f}x per CPU-s per model evaluation, without the "
        f"prescreen's saving: {steady_evaluated / steady_cpu:,.0f} native evaluations per CPU-s ({args.steady_n} accepted "
        f"spectra, one process, one thread, warmed, as XSPEC's library is loaded before timing); target >= 50x"
    )
    print(f"time   : {native_s:.1f} s for {args.n} spectra (target <= 30 s for 100,000)")
    print(
        f"memory : peak RSS {rss_gb:.2f} GB (largest worker {kids_gb:.2f} GB), tracemalloc peak {py_peak / 1e9:.2f} GB (target <= 4 GB)"
    )
    print(f"check  : native tbabs*simpl(diskbb) vs XSPEC, median |diff|/XSPEC per bin = {agree:.2e}")
    if args.backend_n > 0:
        try:
            b_s, b_cpu, b_src = _xspec_backend(args.backend_n, args.backend_config, args.seed, args.backend_workers)
        except ImportError as e:
            print(f"backend: XSPEC library unavailable ({e})")
            return
        expr = b_src["model"]["expression"]
        print(
            f"backend: xspec '{expr}', {args.backend_workers} worker processes: {args.backend_n} accepted spectra "
            f"({b_src['draws']} draws, acceptance {b_src['acceptance']:.2f}) in {b_s:.1f} s wall, {b_cpu:.1f} CPU-s"
        )
        print(
            f"backend: xspec {args.backend_n / b_cpu:,.1f} accepted spectra per CPU-s ({args.backend_n / b_s:,.1f}/s wall) "
            f"| native {args.n / native_cpu:,.1f} accepted spectra per CPU-s ({native_acc:,.0f}/s wall)"
        )


if __name__ == "__main__":
    main()
