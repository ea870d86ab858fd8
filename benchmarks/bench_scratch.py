"""Bytes a study writes to the shared folder per trial, with and without node-local scratch.

Runs the same small ``fspnet`` decoder study twice in this process (``hpo.run.run_study``),
once as today (every trial writes into ``<output_dir>/<study>/trials/<n>``) and once with
``scratch: {dir: <node folder>, stage: [data.path]}``, on a few hundred spectra generated with
``fspnet.synthesize``, ``checkpoint_every: 1`` and plots on. The storage (SQLite) and the
scratch folder lie outside the shared folder.

The shared folder is watched with Linux inotify (``ctypes`` on libc, recursive, new folders
added as they appear): every completed write is counted with the size of the file it left, so
each rewrite of the checkpoint counts, not just the final sizes on disk. A write is a file
closed after writing (``IN_CLOSE_WRITE``) or renamed into place (``IN_MOVED_TO``, how
:func:`runtools.io.atomic_path` finishes a write); the temp files of ``atomic_path``
(``*.tmp``) are not counted twice. Prints both figures per trial and their ratio.

Usage::

    python benchmarks/bench_scratch.py                       # 3 trials of 4 epochs, 300 spectra (~1 min)
    python benchmarks/bench_scratch.py --trials 2 --epochs 2 --spectra 200 --out /tmp/bench_scratch
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import os
import select
import shutil
import struct
import sys
import tempfile
import threading
import time
import typing as tp
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_ISDIR = 0x40000000
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


@dataclasses.dataclass
class WriteCount:
    """What the watcher saw: completed writes and their bytes, per trial folder."""

    writes: int = 0
    bytes: int = 0
    per_trial: dict[str, int] = dataclasses.field(default_factory=dict)
    overflow: bool = False


class InotifyWatcher:
    """Count every completed write below ``root`` (recursive, from a thread) until :meth:`stop`.

    Args:
        root: the folder to watch (made if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = self._libc.inotify_init1(_IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._dirs: dict[int, Path] = {}
        self.count = WriteCount()
        self._stop = threading.Event()
        self._add_tree(root, count_existing=False)
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)
        self._thread.start()

    def _add(self, folder: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder} failed")
        self._dirs[wd] = folder

    def _add_tree(self, folder: Path, count_existing: bool = True) -> None:
        # Watch a new folder first, then count what is already in it: a file written in between
        # counts once too often rather than not at all.
        self._add(folder)
        for p in folder.iterdir():
            if p.is_dir():
                self._add_tree(p, count_existing)
            elif count_existing:
                self._record(p)

    def _record(self, path: Path) -> None:
        if path.name.endswith(".tmp"):
            return  # an atomic_path temp file: counted when it is renamed into place
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0  # replaced or removed already; the next write counts its own size
        self.count.writes += 1
        self.count.bytes += size
        rel = path.relative_to(self.root).parts
        key = rel[rel.index("trials") + 1] if "trials" in rel[:-1] else "(study folder)"
        self.count.per_trial[key] = self.count.per_trial.get(key, 0) + size

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                if self._stop.is_set():
                    return
                continue
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                continue
            off = 0
            while off < len(buf):
                wd, mask, _cookie, n = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size : off + _EVENT.size + n].rstrip(b"\0").decode(errors="replace")
                off += _EVENT.size + n
                if mask & _IN_Q_OVERFLOW:
                    self.count.overflow = True
                    continue
                folder = self._dirs.get(wd)
                if folder is None or not name:
                    continue
                path = folder / name
                if mask & _IN_ISDIR:
                    if mask & (_IN_CREATE | _IN_MOVED_TO) and path.is_dir():
                        self._add_tree(path)
                elif mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO):
                    self._record(path)

    def stop(self) -> WriteCount:
        """Drain the pending events, stop the thread and return the counts."""
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(timeout=10)
        os.close(self._fd)
        return self.count


def _study_file(folder: Path, data: Path, args: argparse.Namespace, scratch: bool) -> Path:
    import yaml

    study: dict[str, tp.Any] = {
        "name": "bench_scratch",
        "output_dir": str(folder / "shared"),
        "storage": f"sqlite:///{folder / 'db' / 'study.db'}",
        "trainable": "fspnet",
        "config_file": str(REPO / "configs" / "fspnet.yaml"),
        "config": {
            "data": {"path": str(data), "generate": None},
            "training": {
                "epochs": args.epochs,
                "batch_size": 60,
                "checkpoint_every": 1,
                "patience": None,
                "device": "cpu",
                "plots": True,
            },
        },
        "direction": "minimize",
        "metric": "val_loss",
        "sampler": {"name": "RandomSampler"},
        "pruner": "none",
        "seed": 0,
        "collate_results": False,
        "tune_params": {
            "lr": {
                "state": True,
                "suggest": "float",
                "kwargs": {"low": 1e-4, "high": 1e-3, "log": True},
                "path": "training.learning_rate",
            }
        },
    }
    if scratch:
        study["scratch"] = {"dir": str(folder / "node"), "stage": ["data.path"]}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run(mode: str, data: Path, out: Path, args: argparse.Namespace) -> tuple[WriteCount, float]:
    """Run the study in ``out/<mode>`` under the watcher; return its counts and wall time."""
    from hpo.run import run_study

    folder = out / mode
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "db").mkdir(parents=True)
    study = _study_file(folder, data, args, scratch=mode == "scratch")
    watcher = InotifyWatcher(folder / "shared")
    t0 = time.perf_counter()
    summary = run_study(study, args.trials, progress=False)
    wall_s = time.perf_counter() - t0
    count = watcher.stop()
    if summary.n_complete != args.trials:
        raise SystemExit(f"bench_scratch: {mode}: {summary.n_complete} of {args.trials} trials completed; see the log")
    return count, wall_s


def main(argv: tp.Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=3, help="trials per run (default 3)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per trial (default 4)")
    p.add_argument("--spectra", type=int, default=300, help="generated spectra (default 300)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_scratch_"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        from fspnet.synthesize import synthesize

        data = out / "spectra.h5"
        if not data.is_file():
            synthesize(None, n=args.spectra, seed=0, out=data, progress=False)
        results = {mode: run(mode, data, out, args) for mode in ("shared", "scratch")}
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print(
        f"bench_scratch: fspnet decoder, {args.spectra} spectra, {args.trials} trials x {args.epochs} epochs, "
        "checkpoint_every 1, plots on; bytes written into the shared study folder (inotify, every rewrite)"
    )
    print(f"{'run':<9} {'writes/trial':>13} {'bytes/trial':>14} {'wall s':>8}")
    per: dict[str, float] = {}
    for mode, (count, wall_s) in results.items():
        per[mode] = count.bytes / args.trials
        flag = "  (inotify queue overflowed: a lower bound)" if count.overflow else ""
        print(f"{mode:<9} {count.writes / args.trials:>13.1f} {per[mode]:>14,.0f} {wall_s:>8.1f}{flag}")
    ratio = per["shared"] / per["scratch"] if per["scratch"] else float("inf")
    print(f"ratio shared/scratch: {ratio:.1f}x fewer bytes to the shared folder with scratch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
