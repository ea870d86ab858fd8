"""Where and how a result was made: seed, git commit, package versions, host, Slurm ids, GPU.

:func:`collect_provenance` returns a JSON-ready dict; :func:`write_provenance` writes it
atomically. Both the trainer (``provenance.json`` in a run directory) and :mod:`hpo` (per
trial) use them. :func:`mask_url` is the one owner of password masking (``hpo.study`` re-exports it).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import typing as tp
from pathlib import Path

from runtools.io import write_json

__all__ = ["collect_provenance", "git_commit", "mask_argv", "mask_secrets", "mask_url", "package_versions", "write_provenance"]

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


#: ``scheme://[user[:password]@]rest``; the password runs to the LAST ``@`` (it may hold an unencoded ``@``).
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:(?P<user>[^:@/?#]*)(?P<pw>:.*)?@)?(?P<rest>[^@]*)$", re.S)
#: Query parameters that carry secrets (``?password=…``, libpq's ``passfile`` is only a path).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|secret|token|api_key)=)[^&#]*")
#: A URL inside a longer text (an argv element such as ``--storage=postgresql://…``).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")


def mask_url(url: str | None) -> str:
    """Return ``url`` with its password replaced by ``***`` (safe to print, log or write).

    Everything between ``scheme://user:`` and the last ``@`` is the password, so a password
    holding an unencoded ``@`` is hidden too; ``password=`` query values are hidden as well.
    Text without ``://`` is returned unchanged.

    Example:
        >>> mask_url("postgresql+psycopg2://me:p@ss@db.example:5432/optuna")
        'postgresql+psycopg2://me:***@db.example:5432/optuna'
    """
    if not url:
        return str(url)
    text = str(url)
    if text.partition("://")[2].startswith("/"):  # no authority (sqlite:////abs/path): no password
        return text
    m = _URL.match(text)
    if m is None:
        if "://" not in text:
            return text
        head, _, rest = text.partition("://")  # '@' in the query too: hide all of the authority
        return f"{head}://***@{rest.rpartition('@')[2]}"
    out = m["scheme"]
    if m["user"] is not None:
        out += m["user"] + (":***" if m["pw"] is not None else "") + "@"
    return out + _SECRET_QUERY.sub(r"\1***", m["rest"])


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it masked by :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text) if "://" in text else text


def mask_argv(argv: tp.Iterable[str]) -> list[str]:
    """``argv`` with the password of every URL in it masked (each element by :func:`mask_secrets`)."""
    return [mask_secrets(str(a)) for a in argv]


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
        "argv": mask_argv(sys.argv),
    }
    prov.update(extra or {})
    return prov


def write_provenance(path: str | os.PathLike[str], **kwargs: tp.Any) -> dict[str, tp.Any]:
    """Collect the provenance (see :func:`collect_provenance`) and write it to ``path`` atomically."""
    prov = collect_provenance(**kwargs)
    write_json(path, prov)
    return prov
