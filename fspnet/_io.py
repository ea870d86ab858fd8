"""Atomic file writes: write to a temporary path beside the target, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import typing as tp
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> tp.Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    Nothing is left behind when the body raises, so readers never see a half-written file.

    Example:
        >>> with atomic_path("model.safetensors") as tmp:  # doctest: +SKIP
        ...     save_file(tensors, tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: tp.Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


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
