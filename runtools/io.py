"""Atomic file writes (temp file beside the target, fsync, rename) and the YAML/JSON mapping reader.

The temporary file is named ``.<target>.<host>.<pid>.<token>.tmp`` in the target's folder, so that
a writer killed mid-write (SIGKILL, out of memory, node failure) leaves a file whose owner can
be identified: the next write of the same target removes such leftovers when their process is
gone (same host) or when they are older than a day (another host, e.g. on a shared filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
import typing as tp
from pathlib import Path

STALE_FOREIGN_TMP_S = 24 * 3600.0  # a temp file of another host is left alone for this long
_HOST = socket.gethostname().replace(os.sep, "_") or "host"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], durable: bool = True) -> tp.Iterator[Path]:
    """Yield a temporary path in the target's folder; fsync it and rename it onto ``path`` on success.

    Nothing is left behind when the body raises, so readers never see a half-written file; the
    data is on disk before the rename and the rename is on disk (the folder is fsynced) before
    this returns, so a crash leaves either the old file or the new one. Temp files left by
    writers of the same target that were killed are removed first.

    With ``durable=False`` both fsyncs are skipped (two of the costliest syscalls on a busy
    disk): readers still never see a half-written file, but after a machine crash (not a
    killed process) the target may be missing, old, or empty. Only for files that are
    rewritten or recomputed when needed, whose loss a reader handles (e.g. a trial's
    ``trial.json``: the storage holds its params and a resume rewrites it).

    Example:
        >>> with atomic_path("model.safetensors") as tmp:  # doctest: +SKIP
        ...     save_file(tensors, tmp)
    """
    target = Path(path)
    tmp = _temp_for(target)
    # O_EXCL: never share a temp file; mode 0o666 lets the umask decide, like open() does.
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    with _replacing(tmp, target, durable):
        yield tmp
        if durable:
            _fsync_file(tmp)


@contextlib.contextmanager
def _replacing(tmp: Path, target: Path, durable: bool) -> tp.Iterator[None]:
    """Rename ``tmp`` over ``target`` when the block succeeds (then fsync the folder when
    ``durable``); remove ``tmp`` when it fails."""
    renamed = False
    try:
        yield
        os.replace(tmp, target)
        renamed = True
        if durable:
            _fsync_dir(target.parent)
    finally:
        if not renamed:
            tmp.unlink(missing_ok=True)


def _temp_for(target: Path) -> Path:
    """Make the target's folder, remove stale temp files of the target, name a new one."""
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    return target.parent / f".{target.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool) -> None:
    """:func:`atomic_path` for bytes in hand: written and fsynced through the one O_EXCL
    descriptor (four fewer opens and closes per file than writing to the yielded path)."""
    target = Path(path)
    tmp = _temp_for(target)
    with _replacing(tmp, target, durable):
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temp_files(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files of ``target`` whose writer is gone; return the removed paths.

    A temp file of this host is stale when its process no longer exists; one of another host
    when it is older than :data:`STALE_FOREIGN_TMP_S`. Files not named by :func:`atomic_path`
    are never touched.
    """
    target = Path(target)
    prefix = f".{target.name}."
    removed: list[Path] = []
    try:
        candidates = [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for p in candidates:
        parts = p.name[len(prefix) : -len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue  # not ours (e.g. another target whose name extends this one)
        host, pid = parts[0], int(parts[1])
        try:
            stale = not _alive(pid) if host == _HOST else time.time() - p.stat().st_mtime > STALE_FOREIGN_TMP_S
            if stale:
                p.unlink()
                removed.append(p)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles (Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike[str], text: str, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``durable=False`` skips the fsyncs (see :func:`atomic_path`)."""
    _write_bytes(path, text.encode("utf-8"), durable)


def write_json(path: str | os.PathLike[str], obj: tp.Any, durable: bool = True) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically; ``durable=False`` skips the fsyncs."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n", durable=durable)


def _jsonable(obj: tp.Any) -> tp.Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def read_mapping(
    path: str | os.PathLike[str], error: type[Exception] = ValueError, what: str = "config file"
) -> dict[str, tp.Any]:
    """Read a YAML (or JSON) file whose top level is a mapping; empty files give ``{}``.

    Raises:
        error: naming ``path`` when it is missing, not valid YAML/JSON or not a mapping.
    """
    import yaml  # JSON is a subset of YAML

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise error(f"{path}: not valid YAML/JSON: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: the top level must be a mapping, but got {type(data).__name__}")
    return data
