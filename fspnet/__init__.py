"""FSP-Net: neural networks that fit X-ray spectra of black-hole binaries.

The package holds the forward model (:mod:`fspnet.physics`), instrument responses
(:mod:`fspnet.response`), datasets (:mod:`fspnet.data`), networks built from JSON
(:mod:`fspnet.nets`) and the trainer (:mod:`fspnet.train`). It knows nothing of Optuna
or Slurm; :mod:`hpo` and :mod:`slurm` build on it.
"""

from __future__ import annotations

__version__ = "0.1.0"
