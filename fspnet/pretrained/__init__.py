"""The shipped, pre-trained FSP-Net encoder and its frozen decoder.

This folder is laid out as an encoder run directory (see :mod:`fspnet.rundir`): ``run.json``,
``network.json``, ``best.safetensors``, ``transforms.json`` and ``config.json`` for the
encoder, ``decoder.safetensors`` + ``decoder_network.json`` for its decoder (same
transforms), ``metrics.json`` and ``provenance.json`` of the training, and ``README.md``
with the held-out figures. An ensemble (several seeds of the final training, averaged) adds
``ensemble.json`` and the other members' ``member-K.safetensors``. Weights are safetensors:
nothing is unpickled.

``origin.json`` (written by every install since it existed) says where they came from: the run directories, the training and installing
git commits and, for networks found by a study, the study, trial number, parameters and the
final-training seeds. :func:`install` writes this folder (``python -m hpo.train_best
--install`` and ``scripts/train_pretrained.py --install`` both call it); setting
``FSPNET_PRETRAINED_DIR`` points :func:`pretrained_dir` (and ``--pretrained``) at another folder
laid out the same way.

Example:
    >>> from fspnet.pretrained import load_pretrained
    >>> run = load_pretrained()  # doctest: +SKIP
    >>> run.stage, run.param_names  # doctest: +SKIP
    ('encoder', ['nh', 'gamma', 'fsc', 'kt_max', 'norm'])
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import typing as tp
from pathlib import Path

from fspnet.errors import DataError

if tp.TYPE_CHECKING:
    from fspnet.rundir import Run

__all__ = [
    "DECODER_FILES", "ENV_DIR", "INSTALL_FILES", "MANAGED_FILES", "ORIGIN", "PRETRAINED_DIR", "install",
    "load_pretrained", "pretrained_dir",
]  # fmt: skip

log = logging.getLogger("fspnet.pretrained")

PRETRAINED_DIR = Path(__file__).resolve().parent
#: Environment variable naming another folder of pre-trained networks.
ENV_DIR = "FSPNET_PRETRAINED_DIR"
_FILES = ("run.json", "network.json", "best.safetensors", "transforms.json", "decoder.safetensors", "decoder_network.json")
#: Files of the encoder run directory that are installed (the encoder run carries its decoder).
INSTALL_FILES = (
    "run.json", "network.json", "best.safetensors", "transforms.json", "config.json",
    "decoder.safetensors", "decoder_network.json", "metrics.json", "provenance.json",
)  # fmt: skip
#: Files of the decoder's own run directory installed beside them, under new names.
DECODER_FILES = {"metrics.json": "decoder_metrics.json", "config.json": "decoder_config.json"}
#: Where the installed networks came from (see :func:`install`).
ORIGIN = "origin.json"
#: Every file :func:`install` owns in the folder: one it does not write this time is removed,
#: so no figure or record of an earlier install is left beside new networks.
MANAGED_FILES = (*INSTALL_FILES, *DECODER_FILES.values(), ORIGIN, "README.md", "evaluation.json", "ensemble.json")


def pretrained_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the pre-trained networks, checked to be complete.

    Args:
        path: the folder (default: ``$FSPNET_PRETRAINED_DIR``, else the shipped
            :data:`PRETRAINED_DIR`).

    Raises:
        DataError: naming the missing file (e.g. in a source checkout where they were not built).
    """
    folder = Path(path) if path is not None else Path(os.environ.get(ENV_DIR) or PRETRAINED_DIR)
    for name in _FILES:
        if not (folder / name).is_file():
            raise DataError(
                f"{folder / name}: the pre-trained networks are not installed; "
                "rebuild them with scripts/train_pretrained.py --install or python -m hpo.train_best --install"
            )
    return folder


def load_pretrained(device: str = "cpu", path: str | os.PathLike[str] | None = None) -> Run:
    """Load the pre-trained encoder (with its decoder) as a :class:`fspnet.rundir.Run`."""
    from fspnet.rundir import load_run

    return load_run(pretrained_dir(path), device=device)


def install(
    run_dir: str | os.PathLike[str],
    target: str | os.PathLike[str] = PRETRAINED_DIR,
    *,
    origin: tp.Mapping[str, tp.Any],
    decoder_run: str | os.PathLike[str] | None = None,
    readme: str | None = None,
    evaluation: tp.Mapping[str, tp.Any] | None = None,
    members: tp.Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Install an encoder run directory (with its frozen decoder) as pre-trained networks.

    The run is loaded first (:func:`fspnet.rundir.load_run` checks that its files belong to
    one run), then its :data:`INSTALL_FILES` and the decoder run's :data:`DECODER_FILES` are
    copied into ``target`` one file at a time (temporary name, then rename), and
    ``origin.json`` records ``origin`` with the source folders, the commit the run's training
    started at (the first record of its ``provenance.json``), the commit installing it and the
    time. Installed files of an earlier install that this one does not write
    (:data:`MANAGED_FILES`, ``member-K.safetensors``) are removed; other files in ``target``
    (the package's ``__init__.py``) are left alone.

    Args:
        run_dir: an encoder run directory written by :func:`fspnet.train.train`.
        target: the folder to install into (default: the shipped :data:`PRETRAINED_DIR`).
        origin: what made the run, e.g. ``{"made_by": ..., "study": ..., "trial": ...,
            "params": {...}}``; JSON-serialisable.
        decoder_run: the decoder's run directory (default: the run config's
            ``encoder.decoder_run``).
        readme: ``README.md`` text (default: a short one generated from ``origin``).
        evaluation: a held-out evaluation summary written as ``evaluation.json``.
        members: other encoder runs of the same network, decoder and data (e.g. the other seeds
            of a final training): installed with ``run_dir`` as one ensemble whose prediction is
            their mean (:func:`fspnet.rundir.write_ensemble`).

    Returns:
        ``target``.

    Raises:
        DataError: naming the folder when ``run_dir`` is not a complete encoder run, or
            the decoder run is missing.

    Example:
        >>> install("outputs/enc/best/seed-0", "/tmp/pretrained",  # doctest: +SKIP
        ...         origin={"made_by": "python -m hpo.train_best", "study": "enc", "trial": 7})
    """
    from fspnet.rundir import MEMBER_WEIGHTS, load_run, write_ensemble
    from runtools.io import atomic_path, write_json, write_text
    from runtools.provenance import git_commit

    src, dst = Path(run_dir), Path(target)
    run = load_run(src)
    if run.stage != "encoder" or run.decoder is None:
        raise DataError(
            f"{src}: a {run.stage} run; pre-trained networks are an encoder run with its frozen decoder: "
            "install the encoder trained through this decoder"
        )
    missing = [name for name in INSTALL_FILES if not (src / name).is_file()]
    if missing:
        raise DataError(f"{src}: cannot install an incomplete run directory (missing {', '.join(missing)})")
    config = json.loads((src / "config.json").read_text())
    dec = Path(decoder_run) if decoder_run is not None else Path(config["encoder"]["decoder_run"])
    dec_missing = [name for name in DECODER_FILES if not (dec / name).is_file()]
    if dec_missing:
        raise DataError(
            f"{dec}: the decoder run of {src} lacks {', '.join(dec_missing)}; pass decoder_run= (--decoder-run) "
            "naming the decoder's run directory"
        )
    prov = json.loads((src / "provenance.json").read_text())
    trained = (prov.get("previous") or [prov])[0].get("git", {})  # where the training started, not its last resume
    record = {
        **dict(origin),
        "run_dir": str(src),
        "decoder_run": str(dec),
        **({"ensemble_members": [str(src), *map(str, members)]} if members else {}),
        "trained_at_commit": trained,
        "installed_at_commit": git_commit(),
        "installed_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    dst.mkdir(parents=True, exist_ok=True)
    written = {*INSTALL_FILES, *DECODER_FILES.values(), ORIGIN, "README.md"}
    for name in INSTALL_FILES:
        with atomic_path(dst / name) as tmp:
            shutil.copyfile(src / name, tmp)
    for name, new in DECODER_FILES.items():
        with atomic_path(dst / new) as tmp:
            shutil.copyfile(dec / name, tmp)
    if members:
        written.update(write_ensemble(dst, src, members))
    if evaluation is not None:
        write_json(dst / "evaluation.json", dict(evaluation))
        written.add("evaluation.json")
    write_json(dst / ORIGIN, record)
    write_text(dst / "README.md", readme if readme is not None else _readme(record))
    stale = [*MANAGED_FILES, *(p.name for p in dst.iterdir() if MEMBER_WEIGHTS.fullmatch(p.name))]
    for name in stale:
        if name not in written and (dst / name).is_file():
            (dst / name).unlink()
            log.info("removed %s of an earlier install", dst / name)
    size = sum(p.stat().st_size for p in dst.iterdir() if p.is_file() and p.name in written)
    log.info("installed %s (decoder %s) into %s (%.2f MB)", src, dec, dst, size / 1e6)
    return dst


def _readme(record: tp.Mapping[str, tp.Any]) -> str:
    lines = [
        "# Pre-trained FSP-Net networks",
        "",
        "An encoder run directory (`fspnet.train`) with its frozen decoder: load it with",
        "`fspnet.pretrained.load_pretrained()`, or `python -m fspnet.predict --pretrained --data F.h5`.",
        "",
        *(
            [
                f"An ensemble of {len(record['ensemble_members'])} trainings of one encoder (`ensemble.json`): it predicts their mean.",
                "",
            ]
            if record.get("ensemble_members")
            else []
        ),
        "Where they came from (`origin.json`):",
        "",
    ]
    for key, value in record.items():
        text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
        lines.append(f"- {key}: `{text}`")
    lines += ["", "Held-out figures: `python -m fspnet.evaluate --pretrained --data HELDOUT.h5`."]
    return "\n".join(lines) + "\n"
