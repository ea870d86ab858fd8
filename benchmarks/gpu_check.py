"""The figures of ``benchmarks/gpu_check.sh``: training, synthesis, prediction and a packed study.

Every part runs on ``--device`` (``cuda`` on a GPU machine; ``cpu`` with tiny sizes to try the
script anywhere), is timed, and is caught on its own: a part that fails records its error and
the others still run. Results go to ``<out>/gpu_check.json`` and a printed table.

* ``train``: the default decoder (217,854 weights) with the trainer's epoch function, data
  resident on the device, at batch 60, 1024 and 4096 (:func:`bench_train.bench`); spectra/s,
  peak GPU memory, host<->device copies in one profiled epoch (goal: none per batch), and the
  time 200 epochs of 100,000 spectra would take at that rate.
* ``synthesis``: the forward model (``tbabs(simplcutx(ezdiskbb))`` on the 2000-bin grid) and
  the folding through the NICER response on the device, float64, in chunks; sampling and
  Poisson noise (numpy, host) are left out.
* ``predict``: the shipped pre-trained encoder: :func:`fspnet.predict.predict` end to end
  (numpy spectra in, numpy parameters out), and its network alone on device-resident data.
* ``study``: a 4-trial decoder study run by k = 4, 2, 1 local workers that share this one device
  (``python -m hpo.launch --executor local --workers k --trials-per-node k --trials-per-gpu k``,
  each worker limited to 1/k of the GPU's memory): per k, wall time, trials complete, trials per
  GPU-hour and its ratio to k = 1, and on CUDA the peak memory and utilisation seen by
  ``nvidia-smi`` while it ran.

    python benchmarks/gpu_check.py --device cuda --out outputs/gpu_check
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check   # a dry run here
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import typing as tp
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train

REPO = Path(__file__).resolve().parents[1]

# sizes per mode: a GPU run fits in ~3 minutes; --quick proves every part works in seconds
SIZES = {
    "full": {"train_n": 100_000, "train_repeats": 2, "synth_n": 1_000_000, "synth_chunk": 32_768,
             "predict_n": 500_000, "study_spectra": 20_000, "study_epochs": 5, "study_timeout_s": 150},
    "quick": {"train_n": 2_048, "train_repeats": 1, "synth_n": 512, "synth_chunk": 256,
              "predict_n": 2_000, "study_spectra": 400, "study_epochs": 1, "study_timeout_s": 300},
}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def part_train(device: torch.device, size: dict[str, tp.Any], batch_sizes: list[int]) -> dict[str, tp.Any]:
    rows = []
    for b in batch_sizes:
        r = bench_train.bench(size["train_n"], b, device, size["train_repeats"], reference=False,
                              copies=device.type == "cuda")  # fmt: skip
        ours = r["ours"]
        rows.append({
            "batch_size": b, "spectra_per_s": ours["spectra_per_s"], "seconds_per_epoch": ours["seconds"],
            "n": r["n"], "peak_gpu_mb": r.get("peak_cuda_mb"), "copies_per_epoch": r.get("copies_per_epoch"),
            "batches_per_epoch": -(-r["n"] // b),
            "s_for_200_epochs_of_100k": round(200 * 100_000 / ours["spectra_per_s"], 1),
        })  # fmt: skip
    return {"rows": rows}


def part_synthesis(device: torch.device, size: dict[str, tp.Any]) -> dict[str, tp.Any]:
    from fspnet.synthesize import Synthesizer

    gen = Synthesizer({"seed": 0})
    n, chunk = size["synth_n"], size["synth_chunk"]
    params = torch.as_tensor(gen.sample_params(n, np.random.default_rng(0)), dtype=torch.float64)
    edges = gen.edges.to(device)
    lo, hi = gen.folder.model_range
    matrix = gen.folder._counts_matrix.to(device)  # [M', G] float64 counts per photon

    def run(p: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return gen.model(edges, p)[:, lo:hi] @ matrix  # [B, G] counts s^-1

    run(params[: min(chunk, n)].to(device))  # warm-up: tables to the device, kernels, allocator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    finite = 0
    for i in range(0, n, chunk):
        rate = run(params[i : i + chunk].to(device, non_blocking=True))
        finite += int(torch.isfinite(rate).all(dim=1).sum())
    _sync(device)
    seconds = time.perf_counter() - t0
    out = {"n": n, "chunk": chunk, "seconds": round(seconds, 3), "spectra_per_s": round(n / seconds, 1),
           "finite_rows": finite, "dtype": "float64", "includes": "params host->device, model, folding"}  # fmt: skip
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def part_predict(device: torch.device, size: dict[str, tp.Any]) -> dict[str, tp.Any]:
    from fspnet.predict import BATCH, predict
    from fspnet.pretrained import load_pretrained

    run = load_pretrained(str(device))
    n = size["predict_n"]
    rng = np.random.default_rng(0)
    # positive spectra of the right shape: throughput does not depend on their values
    spectra = 10.0 ** rng.uniform(-3, 1, size=(n, run.input_shape[0]))
    predict(run, spectra[:BATCH], device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    params = predict(run, spectra, device)
    _sync(device)
    end_to_end = time.perf_counter() - t0
    x = torch.as_tensor(spectra, dtype=torch.float32, device=device).log10_()  # stands in for the transform
    net = run.network.eval()
    with torch.no_grad():
        net(x[:BATCH])
        _sync(device)
        t0 = time.perf_counter()
        for i in range(0, n, 4 * BATCH):
            net(x[i : i + 4 * BATCH])
        _sync(device)
    resident = time.perf_counter() - t0
    return {"n": n, "finite_predictions": int(np.isfinite(params).all(axis=1).sum()),
            "predict_spectra_per_s": round(n / end_to_end, 1),
            "network_resident_spectra_per_s": round(n / resident, 1), "network_batch": 4 * BATCH}  # fmt: skip


class _GpuMonitor(threading.Thread):
    """Polls nvidia-smi once a second; keeps the peak memory used and utilisation."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak_mb, self.peak_util, self.samples = 0.0, 0.0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                text = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5, check=True,
                ).stdout.splitlines()[0]  # fmt: skip
                mem, util = (float(v) for v in text.split(","))
                self.peak_mb, self.peak_util = max(self.peak_mb, mem), max(self.peak_util, util)
                self.samples += 1
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
            self.stop.wait(1.0)


def part_study(device: torch.device, size: dict[str, tp.Any], out: Path, ks: tp.Sequence[int]) -> dict[str, tp.Any]:
    """The 4-trial study at each ``k`` trials per GPU; trials per GPU-hour and the gain over k = 1."""
    shutil.rmtree(out / "study", ignore_errors=True)
    runs = {k: _study_run(device, size, out, k) for k in ks}
    base = runs.get(1, {}).get("trials_per_hour")
    for r in runs.values():
        r["vs_k1"] = round(r["trials_per_hour"] / base, 2) if base else None
    return {"runs": [runs[k] for k in ks]}


def _study_run(device: torch.device, size: dict[str, tp.Any], out: Path, k: int) -> dict[str, tp.Any]:
    import optuna
    import yaml

    folder = out / "study" / f"k{k}"
    folder.mkdir(parents=True)
    study = {
        "name": "gpu_check", "output_dir": str(folder / "outputs"), "storage": None, "direction": "minimize",
        "metric": "val_loss", "seed": 0, "n_trials": 4,
        "sampler": {"name": "RandomSampler", "configs": {}}, "pruner": {"name": "none", "configs": {}},
        "trainable": "fspnet", "config_file": str(REPO / "configs" / "fspnet.yaml"),
        "config": {
            "stage": "decoder",
            "data": {"path": str(out / "study" / "data.h5"), "generate": {"n": size["study_spectra"], "seed": 0},
                     "val_fraction": 0.2},
            "training": {"epochs": size["study_epochs"], "patience": None, "batch_size": 1024,
                         "device": str(device), "plots": False, "progress": False},
        },
        "tune_params": {"learning_rate": {"state": True, "suggest": "float", "path": "training.learning_rate",
                                          "kwargs": {"low": 1.0e-4, "high": 3.0e-3, "log": True}}},
        "collate_results": False,
    }  # fmt: skip
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    cmd = [sys.executable, "-m", "hpo.launch", "--study", str(path), "--executor", "local", "--workers", str(k),
           "--trials-per-node", str(k), "--trials-per-gpu", str(k), "--trials-per-worker", str(4 // k),
           "--wait", "--no-progress", "--folder", str(folder / "launch")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("HPO_STORAGE", None)
    monitor = _GpuMonitor() if device.type == "cuda" and shutil.which("nvidia-smi") else None
    if monitor:
        monitor.start()
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=size["study_timeout_s"], check=False
    )  # its exit status is reported, not raised
    seconds = time.perf_counter() - t0
    if monitor:
        monitor.stop.set()
        monitor.join()
    (folder / "launch.log").write_text(proc.stdout + proc.stderr)
    storage = f"sqlite:///{folder / 'outputs' / 'gpu_check' / 'study.db'}"
    try:
        trials = optuna.load_study(study_name="gpu_check", storage=storage).trials
    except Exception as e:  # noqa: BLE001 - whatever optuna raises, the study never started: show why
        raise RuntimeError(
            f"no study in {storage} ({e}); launcher exit {proc.returncode}: {(proc.stdout + proc.stderr)[-800:]}"
        ) from None
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    out_d: dict[str, tp.Any] = {
        "k": k, "workers": k, "device": str(device), "launcher_exit": proc.returncode, "seconds": round(seconds, 1),
        "trials": len(trials), "complete": len(done),
        "trial_seconds": [round((t.datetime_complete - t.datetime_start).total_seconds(), 1) for t in done
                          if t.datetime_complete and t.datetime_start],
        "trials_per_hour": round(len(done) / seconds * 3600, 1), "log": str(folder / "launch.log"),
    }  # fmt: skip
    if monitor:
        out_d.update(nvidia_smi_peak_mb=monitor.peak_mb, nvidia_smi_peak_util_pct=monitor.peak_util, samples=monitor.samples)
    if proc.returncode != 0 or len(done) != 4:
        out_d["log_tail"] = (proc.stdout + proc.stderr)[-800:]
    return out_d


def _table(results: dict[str, tp.Any]) -> str:
    lines = [f"gpu_check on {results['device_name']} ({results['device']}); torch {results['torch']}"]
    tests = results.get("tests_rc")
    if tests is not None:
        status = "passed" if tests == 0 else f"FAILED (exit {tests})"
        if results["device"] == "cpu" and tests == 0:
            status = "skipped without CUDA (dry run)"
        lines.append(f"  CUDA tests (pytest -m gpu): {status}")
    for name in ("train", "synthesis", "predict", "study"):
        r = results.get(name)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"  {name}: ERROR {r['error']}")
            continue
        if name == "train":
            for row in r["rows"]:
                lines.append(
                    f"  decoder training, batch {row['batch_size']:5d}: {row['spectra_per_s']:12,.0f} spectra/s; "
                    f"200 epochs x 100k: {row['s_for_200_epochs_of_100k']:8.1f} s; peak GPU {row['peak_gpu_mb']} MB; "
                    f"host<->device copies/epoch {row['copies_per_epoch']} over {row['batches_per_epoch']} batches"
                )
        elif name == "synthesis":
            lines.append(f"  synthesis (model + folding, float64): {r['spectra_per_s']:12,.0f} spectra/s "
                         f"({r['n']} spectra in {r['seconds']} s; peak GPU {r.get('peak_gpu_mb')} MB)")  # fmt: skip
        elif name == "predict":
            lines.append(f"  encoder prediction: predict() {r['predict_spectra_per_s']:12,.0f} spectra/s end to end; "
                         f"network on resident data {r['network_resident_spectra_per_s']:12,.0f} spectra/s")  # fmt: skip
        else:
            for s in r["runs"]:
                lines.append(f"  4-trial study, k={s['k']} workers on one {results['device']}: {s['complete']}/4 complete "
                             f"in {s['seconds']} s ({s['trials_per_hour']} trials per GPU-hour, {s['vs_k1']}x k=1); "
                             f"trial s {s['trial_seconds']}; nvidia-smi peak {s.get('nvidia_smi_peak_mb')} MB, "
                             f"{s.get('nvidia_smi_peak_util_pct')} %")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the default with --device cpu)")
    parser.add_argument("--out", default="outputs/gpu_check", help="folder for gpu_check.json and the study's files")
    parser.add_argument("--parts", nargs="+", default=["train", "synthesis", "predict", "study"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[60, 1024, 4096])
    parser.add_argument("--trials-per-gpu", type=int, nargs="+", default=[4, 2, 1], choices=(1, 2, 4),
                        help="k values of the study part (k workers share the device)")  # fmt: skip
    parser.add_argument("--tests-rc", type=int, default=None, help="exit status of the CUDA tests, for the table")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda, but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    torch.set_num_threads(1 if device.type == "cuda" else min(2, os.cpu_count() or 1))
    size = SIZES["quick" if args.quick or device.type == "cpu" else "full"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, tp.Any] = {
        "device": str(device), "torch": torch.__version__, "tests_rc": args.tests_rc, "sizes": size,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
    }  # fmt: skip
    parts: dict[str, tp.Callable[[], dict[str, tp.Any]]] = {
        "train": lambda: part_train(device, size, args.batch_sizes),
        "synthesis": lambda: part_synthesis(device, size),
        "predict": lambda: part_predict(device, size),
        "study": lambda: part_study(device, size, out, args.trials_per_gpu),
    }
    failed = False
    for name in args.parts:
        t0 = time.perf_counter()
        try:
            results[name] = parts[name]()
        except Exception as e:  # noqa: BLE001 - one broken part must not hide the others' figures
            results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
            failed = True
        results[name]["part_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[{name}: {results[name]['part_seconds']} s]", json.dumps({k: v for k, v in results[name].items()
                                                                         if k != "traceback"}), flush=True)  # fmt: skip
        (out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    print(_table(results))
    return 1 if failed or (args.tests_rc or 0) != 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
