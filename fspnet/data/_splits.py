"""Seeded train/validation splits, stored as JSON in the run directory.

Indices always refer to rows of the dataset *file*, so a split stays valid when a subset of
the file is used and can be reloaded for prediction or evaluation on the held-out spectra.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing as tp
from pathlib import Path

import numpy as np

from fspnet.errors import DataError
from runtools.io import write_json

__all__ = ["Split", "load_split", "make_split", "subset_indices"]


@dataclasses.dataclass
class Split:
    """Row indices of the training and validation spectra in the dataset file.

    Args:
        train: [N_train] int64 row indices.
        val: [N_val] int64 row indices (the training rows when ``val_fraction`` is 0).
        n_total: rows in the file.
        seed: seed of the permutation.
        val_fraction: requested fraction held out.
    """

    train: np.ndarray
    val: np.ndarray
    n_total: int
    seed: int
    val_fraction: float

    def to_dict(self) -> dict[str, tp.Any]:
        """Return the JSON-ready form."""
        return {
            "n_total": self.n_total,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "train": self.train.tolist(),
            "val": self.val.tolist(),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``splits.json`` atomically."""
        write_json(path, self.to_dict())


def subset_indices(n_total: int, n: int | None, mode: str = "first", seed: int = 0) -> np.ndarray:
    """Return the rows of a ``data.subset``: the first ``n`` or ``n`` drawn at random (sorted).

    ``n=None`` or ``n >= n_total`` keeps every row.
    """
    if n is None or n >= n_total:
        return np.arange(n_total)
    if mode == "first":
        return np.arange(n)
    if mode == "random":
        return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
    raise ValueError(f"subset mode must be 'first' or 'random', but got {mode!r}")


def make_split(rows: int | np.ndarray, val_fraction: float, seed: int, n_total: int | None = None) -> Split:
    """Split dataset rows into training and validation at random.

    Args:
        rows: the number of rows in the file, or the rows to split (a subset).
        val_fraction: fraction in [0, 1) held out; at least one spectrum when positive.
            With 0 the validation set is the training set.
        seed: seed of the permutation.
        n_total: rows in the file when ``rows`` is a subset (default: the largest row + 1).

    Raises:
        DataError: if there are too few spectra to leave one for training.
    """
    if isinstance(rows, (int, np.integer)):
        n_total, rows = int(rows), np.arange(int(rows))
    else:
        rows = np.asarray(rows, dtype=np.int64)
        if n_total is None:
            n_total = int(rows.max()) + 1 if rows.size else 0
    n = len(rows)
    n_val = 0 if val_fraction <= 0 else max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise DataError(f"{n} spectra are too few for a validation fraction of {val_fraction}")
    perm = rows[np.random.default_rng(seed).permutation(n)]
    val = np.sort(perm[:n_val])
    train = np.sort(perm[n_val:])
    if n_val == 0:
        val = train.copy()
    return Split(train=train.astype(np.int64), val=val.astype(np.int64), n_total=n_total, seed=seed, val_fraction=val_fraction)


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a ``splits.json`` written by :meth:`Split.save`.

    Raises:
        DataError: if the file is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        d = json.loads(path.read_text())
        return Split(
            train=np.asarray(d["train"], dtype=np.int64),
            val=np.asarray(d["val"], dtype=np.int64),
            n_total=int(d["n_total"]),
            seed=int(d["seed"]),
            val_fraction=float(d["val_fraction"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed split file ({e})") from None
