"""Native, batched, differentiable X-ray spectral models in torch.

FSP-Net's source model ``tbabs(simplcutx(ezdiskbb))`` and its parts, evaluated on a model
energy grid as photon flux per bin (the XSPEC convention) for a batch of parameter rows:

    >>> from fspnet.physics import SourceModel, energy_grid
    >>> model = SourceModel()
    >>> model.param_names
    ('nh', 'gamma', 'fsc', 'kt_max', 'norm')
    >>> flux = model(energy_grid(), model.default_params(8))  # [8, 2000] photons cm^-2 s^-1

Every component is validated against XSPEC's own model library (tests marked ``xspec``).
Any other XSPEC model expression is evaluated with that library by :class:`XspecModel`
(the ``xspec`` backend of :mod:`fspnet.synthesize`; needs ``pip install fspnet[xspec]``).
"""

from __future__ import annotations

from fspnet.physics._base import Component, Convolution, Param
from fspnet.physics._expression import XspecModel, parse_expression
from fspnet.physics._ezdiskbb import DiskBB, EzDiskBB
from fspnet.physics._grid import energy_grid
from fspnet.physics._model import SourceModel
from fspnet.physics._simplcutx import Simpl, SimplCutX
from fspnet.physics._tbabs import TBabs, tbabs_cross_section

__all__ = [
    "Component",
    "Convolution",
    "DiskBB",
    "EzDiskBB",
    "Param",
    "Simpl",
    "SimplCutX",
    "SourceModel",
    "TBabs",
    "XspecModel",
    "energy_grid",
    "parse_expression",
    "tbabs_cross_section",
]
