"""Evaluation: XSPEC's pgstat and the traditional (non-network) fit used as the baseline."""

from __future__ import annotations

from fspnet.evaluate._fit import FitResult, fit_spectra, spectrum_to_counts
from fspnet.evaluate._pgstat import pgstat, pgstat_gradient, reduced_pgstat

__all__ = ["FitResult", "fit_spectra", "pgstat", "pgstat_gradient", "reduced_pgstat", "spectrum_to_counts"]
