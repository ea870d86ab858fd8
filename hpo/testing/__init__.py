"""Reusable test material: tiny real trainables and contract suites.

* :func:`check_trainable` runs the trainable contract (callback every epoch, ``stop``,
  artifacts in ``run_dir``, exact resume) against any :class:`~hpo.trainables.Trainable`.
* :func:`check_storage` runs the storage contract :mod:`hpo` relies on (create-or-load,
  concurrent ``ask`` without duplicate numbers, user attrs, intermediate values) against a
  storage URL.
"""

from __future__ import annotations

from hpo.testing._contracts import check_storage, check_trainable
from hpo.testing._trainables import instant, linear_regression

__all__ = ["check_storage", "check_trainable", "instant", "linear_regression"]
