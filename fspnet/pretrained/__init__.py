"""The shipped, pre-trained FSP-Net encoder and its frozen decoder.

This folder is laid out as an encoder run directory (see :mod:`fspnet.train`): ``run.json``,
``network.json``, ``best.safetensors``, ``transforms.json`` and ``config.json`` for the
encoder, ``decoder.safetensors`` + ``decoder_network.json`` for its decoder (same
transforms), ``metrics.json`` and ``provenance.json`` of the training, and ``README.md``
with the held-out figures. Weights are safetensors: nothing is unpickled.

They were trained on 100,000 noisy spectra generated with the bundled NICER response by
``scripts/train_pretrained.sh`` (seeded; rerunning it rebuilds this folder).

Example:
    >>> from fspnet.pretrained import load_pretrained
    >>> run = load_pretrained()  # doctest: +SKIP
    >>> run.stage, run.param_names  # doctest: +SKIP
    ('encoder', ['nh', 'gamma', 'fsc', 'kt_max', 'norm'])
"""

from __future__ import annotations

import typing as tp
from pathlib import Path

from fspnet.errors import DataError

if tp.TYPE_CHECKING:
    from fspnet.train import Run

__all__ = ["PRETRAINED_DIR", "load_pretrained", "pretrained_dir"]

PRETRAINED_DIR = Path(__file__).resolve().parent
_FILES = ("run.json", "network.json", "best.safetensors", "transforms.json", "decoder.safetensors", "decoder_network.json")


def pretrained_dir() -> Path:
    """The folder of the shipped networks, checked to be complete.

    Raises:
        DataError: naming the missing file (e.g. in a source checkout where they were not built).
    """
    for name in _FILES:
        if not (PRETRAINED_DIR / name).is_file():
            raise DataError(
                f"{PRETRAINED_DIR / name}: the pre-trained networks are not installed; "
                "rebuild them with scripts/train_pretrained.sh"
            )
    return PRETRAINED_DIR


def load_pretrained(device: str = "cpu") -> Run:
    """Load the shipped encoder (with its decoder) as a :class:`fspnet.train.Run`."""
    from fspnet.train import load_run

    return load_run(pretrained_dir(), device=device)
