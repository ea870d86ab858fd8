"""Parameters, components and their composition (``TBabs() * SimplCutX(EzDiskBB())``).

A component is shaped like an astropy model but in torch and batched over spectra: its
parameters are :class:`Param` class attributes and its physics is a pure static
``evaluate(edges, *params)``. Components compose the way XSPEC models do:

* ``multiplicative * anything`` multiplies the two spectra bin by bin;
* a convolution component wraps the component it acts on, ``SimplCutX(EzDiskBB())``.

The parameters of a composite are those of its parts, left to right, outer before inner.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import torch

__all__ = ["Component", "Param"]

ADDITIVE = "additive"
MULTIPLICATIVE = "multiplicative"
CONVOLUTION = "convolution"


@dataclasses.dataclass(frozen=True)
class Param:
    """One model parameter: what it means and where it may go.

    Args:
        default: value used when none is given, in ``unit``.
        bounds: (low, high) of the physically allowed/trained range, in ``unit``.
        unit: unit string, e.g. ``"keV"`` or ``"1e22 cm^-2"``; ``""`` if dimensionless.
        log: whether the parameter is naturally sampled and learned in log10 space.
        description: one line for humans.
        name: attribute name; filled in when the class body is executed.
    """

    default: float
    bounds: tuple[float, float]
    unit: str = ""
    log: bool = False
    description: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"Param bounds must be (low, high) with low < high, but got {self.bounds}")
        if not low <= self.default <= high:
            raise ValueError(f"Param default {self.default} is outside its bounds {self.bounds}")
        if self.log and low <= 0:
            raise ValueError(f"Param with log=True needs positive bounds, but got {self.bounds}")

    def __set_name__(self, owner: type, name: str) -> None:
        if not self.name:
            object.__setattr__(self, "name", name)


class Component:
    """Base class of every spectral component and composite.

    Subclasses declare :class:`Param` class attributes, set ``kind`` to ``"additive"``,
    ``"multiplicative"`` or ``"convolution"`` and implement a static
    ``evaluate(edges, *params)`` (convolutions: ``evaluate(edges, flux, *params)``) where
    ``edges`` is [E+1] keV float64 and each parameter is [N, 1]; it returns [N, E].

    Calling a component evaluates it: ``component(edges, params)`` with ``params``
    [N, P] (or [P] for one spectrum) in physical units, columns in ``param_names`` order.
    Additive components return photons cm^-2 s^-1 per bin (integrated over the bin, the
    XSPEC convention); multiplicative ones return the dimensionless factor per bin.
    """

    kind: tp.ClassVar[str] = ADDITIVE
    _own_params: tp.ClassVar[tuple[Param, ...]] = ()
    #: spectra evaluated per block inside ``__call__`` (speed only; results are identical).
    chunk_rows: int = 128

    def __init_subclass__(cls, **kwargs: tp.Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(v for v in cls.__dict__.values() if isinstance(v, Param))
        if own:
            cls._own_params = own

    # ------------------------------------------------------------------ metadata
    @property
    def params(self) -> list[Param]:
        """The parameters, in the column order that ``__call__`` expects."""
        return list(self._own_params)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of ``params``, e.g. ``("nh", "gamma", "fsc", "kt_max", "norm")``."""
        return tuple(p.name for p in self.params)

    @property
    def n_params(self) -> int:
        """Number of parameters (columns of the ``params`` tensor)."""
        return len(self.params)

    def default_params(self, n: int = 1) -> torch.Tensor:
        """[n, P] float64 tensor of every parameter's default."""
        row = torch.tensor([p.default for p in self.params], dtype=torch.float64)
        return row.expand(n, -1).clone()

    @property
    def bounds(self) -> torch.Tensor:
        """[P, 2] float64 tensor of (low, high) per parameter."""
        return torch.tensor([p.bounds for p in self.params], dtype=torch.float64)

    @property
    def log_params(self) -> tuple[int, ...]:
        """Indices of the parameters that live in log space."""
        return tuple(i for i, p in enumerate(self.params) if p.log)

    # ------------------------------------------------------------------ evaluation
    def __call__(self, edges: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate on ``edges`` [E+1] keV for ``params`` [N, P] (or [P]); returns [N, E] (or [E])."""
        edges = _check_edges(edges)
        if self.kind == CONVOLUTION and not hasattr(self, "inner"):
            raise TypeError(f"{type(self).__name__} is a convolution: wrap a component first")
        if params is None:
            params = self.default_params(1).to(edges.device)
            single = True
        else:
            params = torch.as_tensor(params)
            single = params.ndim == 1
            if single:
                params = params.unsqueeze(0)
        if params.ndim != 2 or params.shape[1] != self.n_params:
            raise ValueError(
                f"{type(self).__name__}: params must be [N, {self.n_params}] with columns "
                f"{self.param_names}, but got shape {tuple(params.shape)}"
            )
        params = params.to(dtype=torch.float64, device=edges.device)
        # Work on blocks of rows: [rows, E] temporaries then stay in the CPU caches and the
        # allocator's heap, which is several times faster than whole-batch temporaries.
        if params.shape[0] <= self.chunk_rows:
            out = self._forward(edges, params)
        else:
            out = torch.cat([self._forward(edges, p) for p in params.split(self.chunk_rows)])
        return out[0] if single else out

    def _forward(self, edges: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        cols = [params[:, k : k + 1] for k in range(params.shape[1])]
        return self.evaluate(edges, *cols)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ composition
    def __mul__(self, other: Component) -> Component:
        if not isinstance(other, Component):
            return NotImplemented
        if self.kind != MULTIPLICATIVE and other.kind != MULTIPLICATIVE:
            raise TypeError(f"cannot multiply {self!r} by {other!r}: one factor must be multiplicative")
        return _Product(self, other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _Product(Component):
    """Bin-by-bin product of two components (at least one multiplicative)."""

    def __init__(self, left: Component, right: Component) -> None:
        self.left = left
        self.right = right
        both_mul = left.kind == MULTIPLICATIVE and right.kind == MULTIPLICATIVE
        self.kind = MULTIPLICATIVE if both_mul else ADDITIVE  # type: ignore[misc]

    @property
    def params(self) -> list[Param]:
        return self.left.params + self.right.params

    def _forward(self, edges: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        n_left = self.left.n_params
        a = self.left._forward(edges, params[:, :n_left])  # [N, E]
        b = self.right._forward(edges, params[:, n_left:])  # [N, E]
        return a * b

    def __repr__(self) -> str:
        return f"{self.left!r} * {self.right!r}"


class Convolution(Component):
    """A component that acts on the spectrum of the component it wraps."""

    kind: tp.ClassVar[str] = CONVOLUTION

    def __init__(self, inner: Component) -> None:
        if not isinstance(inner, Component) or inner.kind != ADDITIVE:
            raise TypeError(f"{type(self).__name__} wraps an additive component, but got {inner!r}")
        self.inner = inner

    @property
    def params(self) -> list[Param]:
        return list(self._own_params) + self.inner.params

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def _forward(self, edges: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        n_own = len(self._own_params)
        flux = self.inner._forward(edges, params[:, n_own:])  # [N, E]
        cols = [params[:, k : k + 1] for k in range(n_own)]
        return self._convolve(edges, flux, *cols)

    def _convolve(self, edges: torch.Tensor, flux: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return self.evaluate(edges, flux, *params)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def _check_edges(edges: torch.Tensor) -> torch.Tensor:
    edges = torch.as_tensor(edges)
    if edges.ndim != 1 or edges.numel() < 2:
        raise ValueError(f"energy edges must be a 1-D tensor [E+1] in keV, but got shape {tuple(edges.shape)}")
    edges = edges.to(torch.float64)
    if not bool(torch.all(edges[1:] > edges[:-1])) or not bool(edges[0] > 0):
        raise ValueError("energy edges must be positive and strictly increasing (keV)")
    return edges
