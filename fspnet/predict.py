"""Predict spectral parameters with a trained encoder and write them as CSV in physical units.

Command line::

    python -m fspnet.predict --run runs/encoder --data spectra.h5 --out predictions.csv
    python -m fspnet.predict --pretrained --data spectra.h5 --out predictions.csv

The CSV has one row per spectrum: its name (or its row index when the file has no names),
then one column per parameter, inverted through the run's transforms to physical units.
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

from fspnet._io import write_text
from fspnet.data import SpectrumDataset, read_dataset
from fspnet.errors import DataError
from fspnet.train import Run, load_run

__all__ = ["load_run", "predict", "predict_dataset", "write_predictions"]

log = logging.getLogger("fspnet.predict")

BATCH = 4096


@torch.no_grad()
def predict(run: Run, spectra: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Return [N, P] parameters in physical units for [N, C] spectra in physical units.

    Raises:
        DataError: if ``run`` is not an encoder run, or the spectra have the wrong number of bins.
    """
    if run.stage != "encoder":
        raise DataError(f"{run.path}: a {run.stage} run cannot predict parameters; use an encoder run")
    if run.transforms.params is None:
        raise DataError(f"{run.path}: transforms.json has no parameter transform")
    spectra = np.asarray(spectra)
    if spectra.ndim != 2 or spectra.shape[1:] != tuple(run.input_shape):
        raise DataError(f"spectra have shape {spectra.shape}, but {run.path} expects [N, {run.input_shape[0]}]")
    run.network.to(device).eval()
    out = []
    for i in range(0, len(spectra), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(spectra[i : i + BATCH])).to(device, torch.float64)
        z = run.network(run.transforms.spectra(x).float()).flatten(1)  # [B, P] z-scores
        out.append(run.transforms.params.inverse(z.double()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(run.transforms.params.mean)))


def predict_dataset(run: Run, dataset: SpectrumDataset, device: str | torch.device = "cpu") -> tuple[list[str], np.ndarray]:
    """Return the spectrum names (row indices where the file has none) and [N, P] parameters."""
    names = list(dataset.names) if dataset.names is not None else [str(i) for i in range(len(dataset))]
    return names, predict(run, dataset.spectra, device)


def write_predictions(
    path: str | os.PathLike[str], names: tp.Sequence[str], params: np.ndarray, param_names: tp.Sequence[str]
) -> None:
    """Write ``name,<param>...`` rows atomically."""
    columns = list(param_names) or [f"param_{i}" for i in range(params.shape[1])]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *columns])
    for name, row in zip(names, params):
        writer.writerow([name, *(f"{v:.8g}" for v in row)])
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
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.pretrained:
            from fspnet.pretrained import pretrained_dir

            args.run = pretrained_dir()
        run = load_run(args.run, device=args.device)
        dataset = read_dataset(args.data)
        names, params = predict_dataset(run, dataset, args.device)
    except DataError as e:
        parser.exit(2, f"fspnet-predict: error: {e}\n")
    param_names = run.transforms.param_names or run.param_names
    write_predictions(args.out, names, params, param_names)
    print(f"wrote {len(names)} predictions of {', '.join(param_names)} to {Path(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
