"""Evaluation: XSPEC's pgstat, the traditional (non-network) fit used as the baseline, and the
report of ``python -m fspnet.evaluate`` (:func:`evaluate`)."""

from __future__ import annotations

from fspnet.evaluate._evaluate import EvaluateOptions, evaluate
from fspnet.evaluate._fit import FitResult, fit_spectra, spectrum_to_counts
from fspnet.evaluate._pgstat import pgstat, pgstat_gradient, reduced_pgstat

__all__ = [
    "EvaluateOptions",
    "FitResult",
    "evaluate",
    "fit_spectra",
    "pgstat",
    "pgstat_gradient",
    "reduced_pgstat",
    "spectrum_to_counts",
]
