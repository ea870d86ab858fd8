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
    chunk_rows: int = 512
    #: every bin's value depends on that bin's own edges only, so evaluating on a slice of
    #: the grid gives the slice of the whole-grid result (``bins`` in ``__call__``)
    bin_local: tp.ClassVar[bool] = False

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
    def __call__(
        self, edges: torch.Tensor, params: torch.Tensor | None = None, bins: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Evaluate on ``edges`` [E+1] keV for ``params`` [N, P] (or [P]); returns [N, E] (or [E]).

        ``bins=(lo, hi)`` returns only bins ``lo:hi``, the same values as ``out[:, lo:hi]``
        (to rounding), at the cost of the bins the result depends on: a folder that uses
        part of the grid (:attr:`fspnet.response.Folder.model_range`) skips the rest.
        """
        edges = _check_edges(edges)
        n_bins = edges.numel() - 1
        if bins is not None:
            lo, hi = (int(b) for b in bins)
            if not 0 <= lo < hi <= n_bins:
                raise ValueError(f"{type(self).__name__}: bins must be (lo, hi) with 0 <= lo < hi <= {n_bins}, but got {bins}")
            if (lo, hi) == (0, n_bins):
                bins = None
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
        # Work on blocks of rows: [rows, E] temporaries then stay in the allocator's heap
        # instead of growing with the batch. 512 rows: the synthesizer's chunks (~360 rows
        # after its prescreen) are one block; blocks of 128 took 10 % longer (per-call
        # overhead), of 16 50 % longer (2000-bin grid, one thread).
        if bins is None:
            forward = lambda p: self._forward(edges, p)  # noqa: E731
        else:
            forward = lambda p: self._forward_bins(edges, p, lo, hi)  # noqa: E731
        if params.shape[0] <= self.chunk_rows:
            out = forward(params)
        else:
            out = torch.cat([forward(p) for p in params.split(self.chunk_rows)])
        return out[0] if single else out

    def _forward(self, edges: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        cols = [params[:, k : k + 1] for k in range(params.shape[1])]
        return self.evaluate(edges, *cols)  # type: ignore[attr-defined]

    def _forward_bins(self, edges: torch.Tensor, params: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Bins ``lo:hi`` of ``_forward``: a bin-local component evaluates on those bins' edges only."""
        if self.bin_local and type(self)._forward is Component._forward:
            return self._forward(edges[lo : hi + 1], params)
        return self._forward(edges, params)[:, lo:hi]

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

    def _forward_bins(self, edges: torch.Tensor, params: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        n_left = self.left.n_params
        a = self.left._forward_bins(edges, params[:, :n_left], lo, hi)  # [N, hi - lo]
        b = self.right._forward_bins(edges, params[:, n_left:], lo, hi)  # [N, hi - lo]
        return a * b

    def __repr__(self) -> str:
        return f"{self.left!r} * {self.right!r}"


class Convolution(Component):
    """A component that acts on the spectrum of the component it wraps."""

    kind: tp.ClassVar[str] = CONVOLUTION
    #: output bin j depends on input bins <= j only (photons only gain energy), so bins
    #: ``lo:hi`` need the inner component's bins ``0:hi`` only (``_convolve`` gets ``bins``)
    upward: tp.ClassVar[bool] = False

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

    def _forward_bins(self, edges: torch.Tensor, params: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        if not self.upward:
            return self._forward(edges, params)[:, lo:hi]
        n_own = len(self._own_params)
        flux = self.inner._forward_bins(edges, params[:, n_own:], 0, hi)  # [N, hi]
        cols = [params[:, k : k + 1] for k in range(n_own)]
        return self._convolve(edges, flux, *cols, bins=(lo, hi))

    def _convolve(
        self, edges: torch.Tensor, flux: torch.Tensor, *params: torch.Tensor, bins: tuple[int, int] | None = None
    ) -> torch.Tensor:
        out = self.evaluate(edges, flux, *params)  # type: ignore[attr-defined]
        return out if bins is None else out[:, bins[0] : bins[1]]

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
