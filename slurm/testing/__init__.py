"""Tiny trainables for testing and benchmarking workers on a cluster (no data, no torch).

Reference them from a study file as ``trainable: slurm.testing:sleep_trainable``.
"""

from __future__ import annotations

from slurm.testing._trainables import counter_trainable, sleep_trainable

__all__ = ["counter_trainable", "sleep_trainable"]
