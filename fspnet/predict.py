"""Predict spectral parameters with a trained encoder and write them as CSV in physical units.

Command line::

    python -m fspnet.predict --run runs/encoder --data spectra.h5 --out predictions.csv
    python -m fspnet.predict --pretrained --data spectra.h5 --out predictions.csv

The CSV has one row per spectrum: its name (or its row index when the file has no names),
then one column per parameter, inverted through the run's transforms to physical units.

A dataset with NaN or infinite values is refused (exit 2), naming the file and the rows. With
``--skip-nonfinite`` those rows are written with ``nan`` parameters and ``nonfinite = 1`` in an
extra last column (``0`` for every predicted row), and the others are predicted as usual.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import typing as tp
from pathlib import Path

import numpy as np
import torch

from fspnet.data import SpectrumDataset, check_finite, nonfinite_rows, read_dataset
from fspnet.errors import DataError
from fspnet.rundir import Run, load_run
from runtools.io import write_text

__all__ = ["NONFINITE_COLUMN", "load_run", "predict", "predict_dataset", "write_predictions"]

NONFINITE_COLUMN = "nonfinite"  # the flag column written with --skip-nonfinite

log = logging.getLogger("fspnet.predict")

BATCH = 4096


@torch.no_grad()
def predict(run: Run, spectra: np.ndarray, device: str | torch.device = "cpu", *, skip_nonfinite: bool = False) -> np.ndarray:
    """Return [N, P] parameters in physical units for [N, C] spectra in physical units.

    Args:
        run: an encoder run (:func:`load_run`).
        spectra: [N, C] spectra in physical units.
        device: torch device.
        skip_nonfinite: give rows holding NaN or inf all-NaN parameters instead of refusing them.

    Raises:
        DataError: if ``run`` is not an encoder run, the spectra have the wrong number of bins,
            or (without ``skip_nonfinite``) a spectrum holds NaN or inf (the message lists the rows).
    """
    if run.stage != "encoder":
        raise DataError(f"{run.path}: a {run.stage} run cannot predict parameters; use an encoder run")
    if run.transforms.params is None:
        raise DataError(f"{run.path}: transforms.json has no parameter transform")
    spectra = np.asarray(spectra)
    if spectra.ndim != 2 or spectra.shape[1:] != tuple(run.input_shape):
        raise DataError(f"spectra have shape {spectra.shape}, but {run.path} expects [N, {run.input_shape[0]}]")
    finite = np.isfinite(spectra).all(axis=1)
    if not skip_nonfinite:
        check_finite("spectra", spectra=spectra)
    n_params = len(run.transforms.params.mean)
    result = np.full((len(spectra), n_params), np.nan)
    good = spectra[finite]
    run.network.to(device).eval()
    out = []
    for i in range(0, len(good), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(good[i : i + BATCH])).to(device, torch.float64)
        z = run.network(run.transforms.spectra(x).float()).flatten(1)  # [B, P] z-scores
        out.append(run.transforms.params.inverse(z.double()).cpu().numpy())
    if out:
        result[finite] = np.concatenate(out)
    return result


def predict_dataset(
    run: Run, dataset: SpectrumDataset, device: str | torch.device = "cpu", *, skip_nonfinite: bool = False
) -> tuple[list[str], np.ndarray]:
    """Return the spectrum names (row indices where the file has none) and [N, P] parameters.

    Rows whose spectrum (or uncertainties, or parameters) hold NaN or inf are refused, or with
    ``skip_nonfinite`` get all-NaN parameters (find them with :func:`fspnet.data.nonfinite_rows`).
    """
    names = list(dataset.names) if dataset.names is not None else [str(i) for i in range(len(dataset))]
    params = predict(run, dataset.spectra, device, skip_nonfinite=skip_nonfinite)
    if skip_nonfinite:
        params[nonfinite_rows(dataset)] = np.nan
    return names, params


def write_predictions(
    path: str | os.PathLike[str],
    names: tp.Sequence[str],
    params: np.ndarray,
    param_names: tp.Sequence[str],
    nonfinite: np.ndarray | None = None,
) -> None:
    """Write ``name,<param>...`` rows atomically (plus a 0/1 ``nonfinite`` column when given [N] flags)."""
    columns = list(param_names) or [f"param_{i}" for i in range(params.shape[1])]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *columns, *([NONFINITE_COLUMN] if nonfinite is not None else [])])
    for i, (name, row) in enumerate(zip(names, params)):
        flag = [int(bool(nonfinite[i]))] if nonfinite is not None else []
        writer.writerow([name, *(f"{v:.8g}" for v in row), *flag])
    write_text(path, buf.getvalue())


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m fspnet.predict`` / ``fspnet-predict``."""
    parser = argparse.ArgumentParser(prog="fspnet-predict", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="encoder run directory (or a folder of shipped weights)")
    which.add_argument("--pretrained", action="store_true", help="use the networks shipped with fspnet (fspnet.pretrained)")
    parser.add_argument("--data", required=True, help="HDF5 dataset of spectra")
    parser.add_argument("--out", default="predictions.csv", help="CSV to write")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    parser.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help=f"write rows holding NaN/inf as nan and flag them in a '{NONFINITE_COLUMN}' column (default: refuse the file)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.pretrained:
            from fspnet.pretrained import pretrained_dir

            args.run = pretrained_dir()
        run = load_run(args.run, device=args.device)
        dataset = read_dataset(args.data, allow_nonfinite=args.skip_nonfinite)
        names, params = predict_dataset(run, dataset, args.device, skip_nonfinite=args.skip_nonfinite)
    except DataError as e:
        parser.exit(2, f"fspnet-predict: error: {e}\n")
    param_names = run.transforms.param_names or run.param_names
    flags = nonfinite_rows(dataset) if args.skip_nonfinite else None
    write_predictions(args.out, names, params, param_names, flags)
    skipped = (
        f" ({int(flags.sum())} rows with NaN/inf written as nan, flagged in '{NONFINITE_COLUMN}')"
        if flags is not None and flags.any()
        else ""
    )
    print(f"wrote {len(names)} predictions of {', '.join(param_names)} to {Path(args.out)}{skipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
