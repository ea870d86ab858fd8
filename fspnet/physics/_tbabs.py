"""Tuebingen-Boulder ISM absorption, XSPEC ``tbabs`` with ``abund wilm``."""

from __future__ import annotations

import ast
import functools
import math
import typing as tp
from importlib import resources

import numpy as np
import torch

from fspnet.physics._base import MULTIPLICATIVE, Component, Param
from fspnet.physics._grid import _GridCache

__all__ = ["TBabs", "tbabs_bin_cross_section", "tbabs_cross_section"]

_TABLE = "tbabs_wilm.npz"
_CACHE = _GridCache()
_AMU_G = 1.6605655e-24  # atomic mass unit as used by tbabs, g
_LOG_ZERO = -690.0


@functools.cache
def _table() -> dict[str, tp.Any]:
    ref = resources.files("fspnet.physics") / "data" / _TABLE
    with resources.as_file(ref) as path, np.load(path) as data:
        table: dict[str, tp.Any] = {k: data[k].copy() for k in data.files}
    table["meta"] = ast.literal_eval(str(table["meta"]))
    return table


def _interp(table: dict[str, tp.Any], name: str, energy_kev: np.ndarray) -> np.ndarray:
    y = np.interp(np.log(energy_kev), table[f"{name}_log_energy_kev"], table[f"{name}_log_sigma"])
    return np.where(y <= _LOG_ZERO, 0.0, np.exp(y))


def _grain_sigma(table: dict[str, tp.Any], dust: np.ndarray) -> np.ndarray:
    """Cross-section per H (1e-22 cm^2) of grains whose atoms absorb ``dust`` unshielded.

    Wilms et al. (2000), appendix: grains of radius a with dn/da ~ a^-p (amin-amax),
    density rho, each of optical depth tau(a) = (4/3) rho a sigma_atom / m_atom, absorb
    pi a^2 (1 - exp(-tau)); integrated over a analytically (incomplete gamma function).
    """
    from scipy.special import gamma, gammainc

    n_atoms = float(table["grain_atoms_per_h"])  # atoms in grains per H
    mass_g = float(table["grain_amu_per_h"]) * _AMU_G  # grain mass per H
    rho = float(table["grain_rho_g_cm3"])
    a0 = float(table["grain_amin_um"]) * 1e-4
    a1 = float(table["grain_amax_um"]) * 1e-4
    p = float(table["grain_pl"])
    k = (1.0 - p) / (a1 ** (1.0 - p) - a0 ** (1.0 - p))  # normalises a^-p on [a0, a1]
    # Number of grains per H from the grain mass.
    n_grains = mass_g * (4.0 - p) / ((4.0 / 3.0) * math.pi * rho * k * (a1 ** (4.0 - p) - a0 ** (4.0 - p)))
    sigma_atom = np.asarray(dust, dtype=np.float64) * 1e-22 / n_atoms  # cm^2 per grain atom
    x = (4.0 / 3.0) * rho * sigma_atom / (mass_g / n_atoms)  # tau per unit radius, cm^-1
    s0, s1 = x * a0, x * a1
    lower_gamma = lambda z: gammainc(4.0 - p, z) * gamma(4.0 - p)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        body = (
            a0 ** (3.0 - p) * -np.expm1(-s0)
            - a1 ** (3.0 - p) * -np.expm1(-s1)
            + x ** (p - 3.0) * (lower_gamma(s1) - lower_gamma(s0))
        )
    sigma = n_grains * math.pi * k / (p - 3.0) * body
    return np.where(x > 0, sigma, 0.0) / 1e-22


def tbabs_cross_section(energy_kev: np.ndarray | torch.Tensor) -> np.ndarray:
    """Total ISM cross-section per H atom of XSPEC tbabs (wilm) at each energy, 1e-22 cm^2.

    Gas (with H2) plus grains; each from the bundled table, interpolated linearly in
    (ln E, ln sigma) with every absorption edge stored exactly. Outside 1e-3 - 1e3 keV
    the end values are used (tbabs itself is 0 above 100 keV).

    Args:
        energy_kev: energies in keV, any shape.

    Returns:
        float64 array of the same shape.
    """
    table = _table()
    e = np.asarray(torch.as_tensor(energy_kev).detach().cpu(), dtype=np.float64)
    return _interp(table, "gas", e) + _grain_sigma(table, _interp(table, "dust", e))


def _bin_sigma_from(table: dict[str, tp.Any], edges: np.ndarray) -> np.ndarray:
    gas = _interp(table, "gas", edges)
    dust = _interp(table, "dust", edges)
    # tbabs averages each phase over the bin's two edges, then shields the grains.
    return 0.5 * (gas[:-1] + gas[1:]) + _grain_sigma(table, 0.5 * (dust[:-1] + dust[1:]))


def tbabs_bin_cross_section(edges_kev: np.ndarray | torch.Tensor) -> np.ndarray:
    """Bin-averaged cross-section [E] (1e-22 cm^2 per H) of XSPEC tbabs on edges [E+1] keV.

    Exactly XSPEC's rule: gas and grain-atom cross-sections are each averaged over the
    bin's two edges, and the grains' self-shielding is applied to the averaged value.
    """
    e = np.asarray(torch.as_tensor(edges_kev).detach().cpu(), dtype=np.float64)
    return _bin_sigma_from(_table(), e)


def _bin_sigma(edges: torch.Tensor) -> torch.Tensor:
    """[E] bin-averaged cross-section as a tensor, cached per grid."""

    def build() -> torch.Tensor:
        return torch.from_numpy(tbabs_bin_cross_section(edges)).to(edges.device)

    return _CACHE.get(edges, "sigma", build)


class TBabs(Component):
    r"""Photo-absorption by the interstellar medium (Wilms, Allen & McCray 2000).

    .. math:: T_j = \exp(-N_H\,\sigma_j), \quad
              \sigma_j = \overline{\sigma_{gas}}_j + \sigma_{grains}(\overline{\sigma_{dust}}_j)

    the transmission of bin j, where the bars average over the bin's two edges and the
    grains' self-shielding is applied to the averaged grain-atom cross-section: exactly
    how XSPEC ``tbabs`` bins (``abund wilm``, 20 % H2, tbabs' grain depletions). The two
    point cross-sections come from a table generated from XSPEC 6.35 itself by
    ``scripts/make_tbabs_table.py`` (see ``fspnet/physics/data/README.md``); agreement
    with XSPEC tbabs: bin cross-sections to 5e-6, transmissions to < 3e-4 wherever T > 1e-30,
    for any N_H (tests/fspnet_tests/physics_tests, docs/physics.md).

    Example:
        >>> edges = energy_grid()
        >>> transmission = TBabs()(edges, torch.tensor([[1.0]]))  # [1, 2000]
    """

    kind = MULTIPLICATIVE
    bin_local = True
    nh = Param(
        default=1.0,
        bounds=(0.005, 75.0),
        unit="1e22 cm^-2",
        log=True,
        description="equivalent hydrogen column density",
    )

    @staticmethod
    def evaluate(edges: torch.Tensor, nh: torch.Tensor) -> torch.Tensor:
        """Transmission [N, E] for ``edges`` [E+1] keV and ``nh`` [N, 1] (1e22 cm^-2)."""
        sigma = _bin_sigma(edges)  # [E]
        return torch.exp(nh * -sigma)
