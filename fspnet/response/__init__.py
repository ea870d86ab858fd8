"""OGIP RMF/ARF/PHA I/O, FSP-Net channel grouping, folding and the bundled NICER response.

Example:
    >>> from fspnet.response import Folder, Response
    >>> rsp = Response.nicer()          # offline, bundled with the package
    >>> rsp.n_channels
    240
"""

from __future__ import annotations

from fspnet.response._fold import Folder, rebin_matrix
from fspnet.response._grouping import Grouping
from fspnet.response._ogip import Arf, Pha, Rmf, read_arf, read_pha, read_rmf
from fspnet.response._response import Response

__all__ = [
    "Arf",
    "Folder",
    "Grouping",
    "Pha",
    "Response",
    "Rmf",
    "read_arf",
    "read_pha",
    "read_rmf",
    "rebin_matrix",
]
