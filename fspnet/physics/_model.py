"""FSP-Net's source model: ``tbabs(simplcutx(ezdiskbb))``."""

from __future__ import annotations

from fspnet.physics._base import _Product
from fspnet.physics._ezdiskbb import EzDiskBB
from fspnet.physics._simplcutx import SimplCutX
from fspnet.physics._tbabs import TBabs

__all__ = ["SourceModel"]


class SourceModel(_Product):
    """``TBabs() * SimplCutX(EzDiskBB())``: absorbed, Comptonised zero-torque disk.

    Five parameters, in this column order (physical units; ranges are FSP-Net's):

    ========  ==============  ===========  =====
    name      unit            bounds       scale
    ========  ==============  ===========  =====
    nh        1e22 cm^-2      5e-3 - 75    log
    gamma                     1.3 - 4      linear
    fsc                       1e-3 - 1     log
    kt_max    keV             0.025 - 4    log
    norm                      1e-2 - 1e10  log
    ========  ==============  ===========  =====

    ``model(edges, params)`` with ``edges`` [E+1] keV and ``params`` [N, 5] float64 returns
    the photon flux per bin [N, E] (photons cm^-2 s^-1, integrated over each bin, the XSPEC
    convention), float64 and differentiable with respect to ``params``. Grid-dependent
    tables are cached per grid, so a batch is a few tensor operations per bin.

    Args:
        kte_kev: electron temperature of simplcutx, keV (FSP-Net: 100).

    Example:
        >>> model = SourceModel()
        >>> edges = energy_grid()  # 0.002-200 keV, 2000 bins
        >>> flux = model(edges, model.default_params(4))  # [4, 2000]
    """

    def __init__(self, kte_kev: float = 100.0) -> None:
        super().__init__(TBabs(), SimplCutX(EzDiskBB(), kte_kev=kte_kev))

    def __repr__(self) -> str:
        return f"SourceModel({self.left!r} * {self.right!r})"
