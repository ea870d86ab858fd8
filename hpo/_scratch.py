"""Node-local scratch: trials train on the node's own disk, the shared folder gets what lasts.

With ``scratch: {dir: auto}`` in a study file, trial ``n`` trains in
``<scratch>/<study>/trials/<n>`` instead of the shared ``<output_dir>/<study>/trials/<n>``;
the checkpoint rewritten every epoch never touches the shared filesystem. The rules:

* ``dir``: ``auto`` takes ``$SLURM_TMPDIR``, then ``$TMPDIR``, then the system temp folder
  (:func:`tempfile.gettempdir`), resolved on the node that runs the trial; a path (``~`` and
  ``$VARS`` expanded) is used as is; ``null`` (the default) turns scratch off.
* ``stage``: dotted keys of the trainable config (``data.path``) whose files or folders are
  copied once per node into ``<scratch>/<study>/data/`` (one copy shared by the node's workers
  under a file lock; copied to a temp name, then renamed; reused while the source's size and
  mtime are unchanged). The trial's config points at the copy; ``trial.json`` keeps the shared
  path.
* When a trial ends (complete, pruned or failed) the files matching ``copy_back`` (plots,
  metrics, configs, best weights by default; not the checkpoint) are copied atomically into the
  shared trial folder, and the scratch trial folder is removed.
* When a trial is interrupted (preemption, walltime, Ctrl-C), *everything* in its scratch
  folder (the checkpoint and whatever the trainer reads to resume) is copied to the shared
  trial folder before the worker requeues or exits, so the trial resumes on any node: a
  resume first restores the shared copy into a fresh scratch folder.

``trial.json`` and ``result.json``, which :mod:`hpo` itself writes, always go straight to the
shared folder, where collation, reports and ``train_best`` read them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import typing as tp
from pathlib import Path

from hpo.errors import HpoError
from runtools.io import atomic_path, write_json
from runtools.schema import field as _field
from runtools.schema import get_path, set_path

__all__ = [
    "AUTO",
    "CHECKPOINT_MANIFEST",
    "DEFAULT_COPY_BACK",
    "HPO_FILES",
    "ScratchSection",
    "TrialScratch",
    "check_stage_keys",
    "copy_files",
    "resolve_scratch_root",
    "stage_path",
]

_LOG = logging.getLogger(__name__)

#: ``scratch.dir`` value that picks ``$SLURM_TMPDIR``, then ``$TMPDIR``, then the system temp folder.
AUTO = "auto"
#: What a finished trial copies back by default: plots, JSON/CSV metrics and configs, best weights.
DEFAULT_COPY_BACK = ("*.png", "*.svg", "*.pdf", "*.json", "*.csv", "*.safetensors")
#: Files :mod:`hpo` writes into the shared trial folder itself; never copied between the two folders.
HPO_FILES = ("trial.json", "result.json")
#: In the shared trial folder: the files an interruption copied there (removed at the trial's end
#: unless ``copy_back`` also matches them, so a finished trial keeps no stale checkpoint).
CHECKPOINT_MANIFEST = ".scratch-checkpoint.json"
_ENV_ORDER = ("SLURM_TMPDIR", "TMPDIR")


def _check_dir(v: tp.Any) -> str | None:
    return None if v.strip() else f"must be {AUTO}, a folder path or null, but got {v!r}"


def _check_keys(v: tp.Any) -> str | None:
    bad = [k for k in v if not k.strip() or k.startswith(".") or k.endswith(".") or ".." in k]
    if bad:
        return f"must be dotted keys of the trainable config (e.g. data.path), but got {bad!r}"
    dup = sorted({k for k in v if v.count(k) > 1})
    return f"lists {', '.join(dup)} more than once" if dup else None


def _check_patterns(v: tp.Any) -> str | None:
    bad = [p for p in v if not p.strip() or p.startswith("/") or ".." in Path(p).parts]
    if bad:
        return f"must be glob patterns relative to the trial folder (e.g. *.png, plots/*.pdf), but got {bad!r}"
    return None


@dataclasses.dataclass
class ScratchSection:
    """``scratch:`` of a study file; off (``dir: null``) by default."""

    dir: str | None = _field(
        None, _check_dir, "auto ($SLURM_TMPDIR, then $TMPDIR, then the system temp folder), a node-local folder, or null: off"
    )
    stage: list[str] = _field([], _check_keys, "dotted config keys (e.g. data.path) whose file/folder is copied once per node")
    copy_back: list[str] = _field(
        list(DEFAULT_COPY_BACK), _check_patterns, "glob patterns copied to the shared trial folder when a trial ends"
    )

    @property
    def enabled(self) -> bool:
        return self.dir is not None


def check_stage_keys(
    section: ScratchSection, base_config: dict[str, tp.Any], has_path: tp.Callable[..., bool]
) -> list[tuple[str, str]]:
    """``(key path, problem)`` for every ``scratch.stage`` key that is not a key of the trainable config."""
    return [
        (f"scratch.stage.{i}", f"{key!r} is not a key of the trainable config")
        for i, key in enumerate(section.stage)
        if not has_path(base_config, key)
    ]


def resolve_scratch_root(value: str, environ: tp.Mapping[str, str] | None = None) -> Path:
    """The scratch folder of ``scratch.dir`` on this node (see the module docstring for ``auto``).

    Example:
        >>> resolve_scratch_root("auto", {"SLURM_TMPDIR": "/local/job42", "TMPDIR": "/tmp/me"})
        PosixPath('/local/job42')
    """
    env = os.environ if environ is None else environ
    if value == AUTO:
        for name in _ENV_ORDER:
            if env.get(name, "").strip():
                return Path(env[name])
        return Path(tempfile.gettempdir())
    expanded = os.path.expandvars(os.path.expanduser(value))
    if "$" in expanded:
        raise HpoError(f"scratch.dir: {value!r} names an environment variable that is not set on {socket.gethostname()}")
    return Path(expanded)


# ----------------------------------------------------------------------------- copying


def _walk(folder: Path) -> list[Path]:
    """Files below ``folder`` (relative), skipping hidden ones (temp files, locks, the manifest)."""
    if not folder.is_dir():
        return []
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel)
    return sorted(out)


def _matching(folder: Path, patterns: tp.Iterable[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        for p in folder.glob(pattern):
            rel = p.relative_to(folder)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                found.add(rel)
    return sorted(found)


def copy_files(src: Path, dst: Path, names: tp.Iterable[Path]) -> int:
    """Copy ``src/<name>`` to ``dst/<name>`` for each relative ``name``, atomically (temp + rename).

    A target with the same size and mtime as its source is left alone (``copy2`` keeps mtimes,
    so a second sync of unchanged files writes nothing). Returns the bytes written.
    """
    written = 0
    for name in names:
        s, d = src / name, dst / name
        st = s.stat()
        try:
            dt = d.stat()
            if dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
                continue
        except FileNotFoundError:
            pass
        with atomic_path(d) as tmp:
            shutil.copy2(s, tmp)
        written += st.st_size
    return written


def _signature(src: Path) -> list[list[tp.Any]]:
    """What decides that a staged copy is current: size and mtime of the file (or of each file of the folder)."""
    if src.is_file():
        st = src.stat()
        return [[".", st.st_size, st.st_mtime_ns]]
    return [[str(rel), st.st_size, st.st_mtime_ns] for rel in _walk(src) for st in [(src / rel).stat()]]


def stage_path(src: str | os.PathLike[str], data_dir: Path) -> tuple[Path, bool]:
    """Copy the file or folder ``src`` into ``data_dir`` once; return ``(copy, copied_now)``.

    Workers of a node share one copy: an exclusive ``flock`` per source serialises them, the copy
    is made under a temp name and renamed into place, and a stamp file records the source's
    sizes and mtimes, so the copy is reused until the source changes. The copy's name carries a
    hash of the source's absolute path, so two sources with one base name do not collide.

    Raises:
        HpoError: when ``src`` does not exist.
    """
    from hpo.study import _file_lock  # the study module owns the lock helper (and imports this one)

    source = Path(src).expanduser().absolute()
    if not source.exists():
        raise HpoError(f"{source}: not found on {socket.gethostname()}; nothing to stage")
    name = f"{hashlib.sha256(str(source).encode()).hexdigest()[:10]}-{source.name}"
    dst, stamp = data_dir / name, data_dir / f".{name}.stamp.json"
    with _file_lock(data_dir / f".{name}.lock"):
        sig = _signature(source)
        try:
            if dst.exists() and json.loads(stamp.read_text()) == sig:
                return dst, False
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        stamp.unlink(missing_ok=True)  # from here on the copy is not current
        if source.is_file():
            with atomic_path(dst) as tmp:
                shutil.copy2(source, tmp)
        else:
            tmp_dir = data_dir / f".{name}.{socket.gethostname()}.{os.getpid()}.tmp"
            shutil.rmtree(tmp_dir, ignore_errors=True)
            shutil.copytree(source, tmp_dir)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(tmp_dir, dst)
        write_json(stamp, sig)
        _LOG.info("staged %s to %s", source, dst)
        return dst, True


# ----------------------------------------------------------------------------- one trial


class TrialScratch:
    """The scratch side of one trial: restore, staging, checkpoint sync, copy-back.

    Args:
        section: the study's validated ``scratch:`` section (enabled).
        study_name: the study name (the scratch folder is ``<root>/<study>``).
        shared_dir: the trial's shared folder, ``cfg.trial_dir(n)``.
        environ: environment for ``auto`` (default ``os.environ``).

    Raises:
        HpoError: when the scratch trial folder is the shared one (``scratch.dir`` equal to
            ``output_dir``): removing it at the end would remove the results.
    """

    def __init__(
        self, section: ScratchSection, study_name: str, shared_dir: Path, environ: tp.Mapping[str, str] | None = None
    ) -> None:
        assert section.dir is not None
        self.section = section
        self.root = resolve_scratch_root(section.dir, environ) / study_name
        self.shared_dir = Path(shared_dir)
        self.run_dir = self.root / "trials" / self.shared_dir.name
        if self.run_dir.absolute().resolve() == self.shared_dir.absolute().resolve():
            raise HpoError(
                f"scratch.dir: {section.dir!r} puts trial {self.shared_dir.name}'s scratch folder at its shared folder "
                f"{self.shared_dir}; choose a node-local folder other than output_dir"
            )
        #: Bytes written into the shared trial folder by this object (checkpoint syncs and copy-back).
        self.bytes_to_shared = 0

    def begin(self, resume: bool) -> None:
        """Make a fresh scratch trial folder; on ``resume`` fill it from the shared folder.

        The shared folder holds the checkpoint an interruption copied there (or, for a trial
        begun without scratch, everything): a resume on any node starts from it.
        """
        shutil.rmtree(self.run_dir, ignore_errors=True)  # leftovers of a killed worker on this node
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            names = [n for n in _walk(self.shared_dir) if str(n) not in HPO_FILES]
            copy_files(self.shared_dir, self.run_dir, names)
            _LOG.info(
                "trial %s: restored %d file(s) from %s into %s", self.shared_dir.name, len(names), self.shared_dir, self.run_dir
            )

    def stage(self, config: dict[str, tp.Any]) -> tuple[dict[str, tp.Any], dict[str, dict[str, str]]]:
        """Point each ``scratch.stage`` key of ``config`` at this node's copy of its file.

        Returns:
            The new config and ``{key: {"shared": original, "copy": staged copy}}``; keys whose
            value is empty (e.g. a trainable that generates its data) are left alone.

        Raises:
            HpoError: ``scratch.stage: <key>: ...`` when the file is missing or the key is not in ``config``.
        """
        out = copy.deepcopy(config)
        staged: dict[str, dict[str, str]] = {}
        for key in self.section.stage:
            try:
                value = get_path(out, key)
            except KeyError:
                raise HpoError(f"scratch.stage: {key}: not a key of the trial's config") from None
            if value in (None, ""):
                continue
            try:
                staged_copy, _ = stage_path(value, self.root / "data")
            except HpoError as e:
                raise HpoError(f"scratch.stage: {key}: {e}") from None
            set_path(out, key, str(staged_copy))
            staged[key] = {"shared": str(value), "copy": str(staged_copy)}
        return out, staged

    def save_checkpoint(self) -> int:
        """Copy everything in the scratch trial folder to the shared one (the trial can resume
        on any node); record the files in :data:`CHECKPOINT_MANIFEST`. Returns bytes written."""
        names = [n for n in _walk(self.run_dir) if str(n) not in HPO_FILES]
        written = copy_files(self.run_dir, self.shared_dir, names)
        manifest = self.shared_dir / CHECKPOINT_MANIFEST
        previous = _read_list(manifest)
        write_json(manifest, sorted({*previous, *map(str, names)}))
        self.bytes_to_shared += written
        _LOG.info(
            "trial %s: checkpoint copied to %s (%d file(s), %d bytes)", self.shared_dir.name, self.shared_dir, len(names), written
        )
        return written

    def finish(self) -> int:
        """Copy the ``copy_back`` files to the shared folder, drop the checkpoint an earlier
        interruption left there, and remove the scratch trial folder. Returns bytes written."""
        names = [n for n in _matching(self.run_dir, self.section.copy_back) if str(n) not in HPO_FILES]
        written = copy_files(self.run_dir, self.shared_dir, names)
        manifest = self.shared_dir / CHECKPOINT_MANIFEST
        keep = {str(n) for n in names}
        for name in _read_list(manifest):
            if name not in keep and name not in HPO_FILES:
                (self.shared_dir / name).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        self.remove()
        self.bytes_to_shared += written
        return written

    def remove(self) -> None:
        """Remove the scratch trial folder."""
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def record(self, staged: dict[str, dict[str, str]]) -> dict[str, tp.Any]:
        """The ``scratch`` entry of ``trial.json``: where the trial ran and what it read."""
        return {"run_dir": str(self.run_dir), "host": socket.gethostname(), "staged": staged}


def _read_list(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [str(x) for x in data] if isinstance(data, list) else []
