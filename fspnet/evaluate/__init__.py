"""Evaluation: XSPEC's pgstat, the traditional (non-network) fit used as the baseline, the
documented accuracy and speed goals (:data:`GOALS`), and the report of
``python -m fspnet.evaluate`` (:func:`evaluate`, read back with :func:`read_evaluation`; a
decoder run's report: :func:`evaluate_decoder`, :class:`DecoderSection`, :func:`noise_floor`)."""

from __future__ import annotations

from fspnet.evaluate._decoder import DecoderSection, evaluate_decoder, noise_floor
from fspnet.evaluate._evaluate import (
    EvaluateOptions,
    EvaluationDigest,
    evaluate,
    read_evaluation,
)
from fspnet.evaluate._fit import FitResult, fit_spectra, spectrum_to_counts
from fspnet.evaluate._goals import GOALS, Goals
from fspnet.evaluate._pgstat import pgstat, pgstat_gradient, reduced_pgstat

__all__ = [
    "GOALS",
    "DecoderSection",
    "EvaluateOptions",
    "EvaluationDigest",
    "FitResult",
    "Goals",
    "evaluate",
    "evaluate_decoder",
    "fit_spectra",
    "noise_floor",
    "pgstat",
    "pgstat_gradient",
    "read_evaluation",
    "reduced_pgstat",
    "spectrum_to_counts",
]
