"""Where and how a result was made: seed, git commit, package versions, host, Slurm ids, GPU.

:func:`collect_provenance` returns a JSON-ready dict; :func:`write_provenance` writes it
atomically. Both the trainer (``provenance.json`` in a run directory) and :mod:`hpo` (per
trial) use them.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import typing as tp
from pathlib import Path

from fspnet._io import write_json

__all__ = ["collect_provenance", "git_commit", "package_versions", "write_provenance"]

PACKAGES = ("fspnet", "torch", "numpy", "scipy", "h5py", "astropy", "safetensors", "optuna", "submitit", "sqlalchemy")
SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_NODELIST",
    "SLURM_PROCID",
    "SLURM_RESTART_COUNT",
    "SLURM_CLUSTER_NAME",
)


def git_commit(path: str | os.PathLike[str] | None = None) -> dict[str, tp.Any]:
    """Return ``{"commit": sha or None, "dirty": bool or None}`` of the repository holding ``path``.

    ``path`` defaults to this package's folder; outside a git checkout both values are None.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha or None, "dirty": bool(status.strip())}


def package_versions(packages: tp.Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Return the installed version of each package, None where it is not installed."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _gpu() -> dict[str, tp.Any]:
    info: dict[str, tp.Any] = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return info
    info["cuda_available"] = torch.cuda.is_available()
    info["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def collect_provenance(
    seed: int | None = None,
    device: str | None = None,
    extra: tp.Mapping[str, tp.Any] | None = None,
) -> dict[str, tp.Any]:
    """Collect the provenance of the current process.

    Args:
        seed: the random seed of the run.
        device: the torch device the run uses.
        extra: more JSON-ready entries merged in at the top level.

    Returns:
        ``{"time_utc", "seed", "device", "git", "packages", "python", "host", "slurm", "gpu",
        "argv", ...extra}``.

    Example:
        >>> p = collect_provenance(seed=0)
        >>> sorted(p)[:3]
        ['argv', 'device', 'git']
    """
    prov: dict[str, tp.Any] = {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "device": device,
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "pid": os.getpid()},
        "slurm": {k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
        "gpu": _gpu(),
        "argv": list(sys.argv),
    }
    prov.update(extra or {})
    return prov


def write_provenance(path: str | os.PathLike[str], **kwargs: tp.Any) -> dict[str, tp.Any]:
    """Collect the provenance (see :func:`collect_provenance`) and write it to ``path`` atomically."""
    prov = collect_provenance(**kwargs)
    write_json(path, prov)
    return prov
