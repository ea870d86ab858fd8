"""Any XSPEC model expression, evaluated with XSPEC's own library: the ``xspec`` backend.

``XspecModel("tbabs*(diskbb+powerlaw)", free={...})`` parses the expression the way XSPEC
reads it and evaluates it with XSPEC's compiled models (through :mod:`fspnet.physics._xspec`,
the one module that talks to ``xspectrampoline``):

* ``+`` adds spectra, ``*`` multiplies; ``*`` binds tighter than ``+``; ``name(expr)`` is
  ``name * (expr)``;
* additive components return their norm-1 spectrum times their ``norm`` parameter;
* multiplicative components multiply the spectrum of their group bin by bin;
* convolution components (``simpl``, ``thcomp``, ``cflux``, ...) act on everything to their
  right in the same product, on the same energy grid.

Parameters are named ``component.parameter`` with XSPEC's names (``diskbb.Tin``,
``powerlaw.norm``); a component used twice is ``powerlaw_2`` the second time. Only the
*free* parameters are columns of the ``params`` tensor (their bounds and log flags are the
sampling ranges); every other parameter is frozen at XSPEC's default, at a given value, or
tied to another parameter. The model is a :class:`~fspnet.physics.Component`, so the
synthesizer, the fit and the evaluation use it exactly as they use the native model. It is
not differentiable (the fit uses finite differences).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing as tp

import numpy as np
import torch

from fspnet.errors import ConfigError
from fspnet.physics._base import ADDITIVE, CONVOLUTION, MULTIPLICATIVE, Component, Param

__all__ = ["XspecModel", "parse_expression"]

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\S))")


# ----------------------------------------------------------------------------- syntax tree


@dataclasses.dataclass
class _Comp:
    label: str  # "powerlaw", "powerlaw_2"
    info: tp.Any  # XspecComponentInfo
    kind: str
    first: int = 0  # index of its first parameter in the full parameter vector


@dataclasses.dataclass
class _Sum:
    terms: list[tp.Any]
    kind: str = ADDITIVE


@dataclasses.dataclass
class _Prod:
    factors: list[tp.Any]
    kind: str = ADDITIVE


class _Parser:
    """Recursive descent over ``expr := term ('+' term)*``, ``term := factor ('*' factor)*``,
    ``factor := NAME ['(' expr ')'] | '(' expr ')'``."""

    def __init__(self, text: str, components: dict[str, tp.Any]) -> None:
        self.text = text
        self.components = components
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        for m in _TOKEN.finditer(text):
            if m.group(1):
                self.tokens.append(("name", m.group(1), m.start(1)))
            else:
                if m.group(2) not in "+*()":
                    self._fail(f"unexpected character {m.group(2)!r}", m.start(2))
                self.tokens.append((m.group(2), m.group(2), m.start(2)))
        self.i = 0
        self.counts: dict[str, int] = {}
        self.leaves: list[_Comp] = []

    def _fail(self, why: str, at: int | None = None) -> tp.NoReturn:
        where = f"at position {at}: " if at is not None else ""
        raise ConfigError(f"model.expression {self.text!r}: {where}{why}")

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def _take(self, kind: str) -> tuple[str, str, int]:
        if self._peek() != kind:
            at = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
            got = repr(self.tokens[self.i][1]) if self.i < len(self.tokens) else "the end"
            self._fail(f"expected {'a component name' if kind == 'name' else repr(kind)}, but got {got}", at)
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> tp.Any:
        if not self.tokens:
            self._fail("empty expression")
        node = self._expr()
        if self.i < len(self.tokens):
            self._fail(f"unexpected {self.tokens[self.i][1]!r}", self.tokens[self.i][2])
        return node

    def _expr(self) -> tp.Any:
        terms = [self._term()]
        while self._peek() == "+":
            self._take("+")
            terms.append(self._term())
        if len(terms) == 1:
            return terms[0]
        for t in terms:
            if t.kind != ADDITIVE:
                self._fail(f"every term of a sum must be additive, but {_show(t)} is {t.kind}")
        return _Sum(terms)

    def _term(self) -> tp.Any:
        factors = [self._factor()]
        while self._peek() in ("*", "("):
            if self._peek() == "*":
                self._take("*")
            factors.append(self._factor())
        return factors[0] if len(factors) == 1 else self._product(factors)

    def _factor(self) -> tp.Any:
        if self._peek() == "(":
            self._take("(")
            node = self._expr()
            self._take(")")
            return node
        _, name, at = self._take("name")
        info = self.components.get(name.lower())
        if info is None:
            close = difflib.get_close_matches(name.lower(), list(self.components), n=3)
            hint = f" (similar: {', '.join(close)})" if close else ""
            usable = sorted(k for k, v in self.components.items() if v.kind in (ADDITIVE, MULTIPLICATIVE, CONVOLUTION))
            self._fail(f"unknown component {name!r}{hint}; valid components are XSPEC's models: {', '.join(usable)}", at)
        if info.kind not in (ADDITIVE, MULTIPLICATIVE, CONVOLUTION):
            self._fail(f"{info.name} is a {info.kind} model, which works on several spectra at once; not supported", at)
        n = self.counts[info.name.lower()] = self.counts.get(info.name.lower(), 0) + 1
        leaf = _Comp(info.name.lower() if n == 1 else f"{info.name.lower()}_{n}", info, info.kind)
        self.leaves.append(leaf)
        if self._peek() == "(":  # name(expr) is name * (expr)
            self._take("(")
            inner = self._expr()
            self._take(")")
            return self._product([leaf, inner])
        return leaf

    def _product(self, factors: list[tp.Any]) -> _Prod:
        additive = [f for f in factors if f.kind == ADDITIVE]
        if len(additive) > 1:
            self._fail(f"cannot multiply two additive parts ({_show(additive[0])} * {_show(additive[1])}); use '+'")
        for k, f in enumerate(factors):
            if f.kind == CONVOLUTION and not any(g.kind == ADDITIVE for g in factors[k + 1 :]):
                self._fail(f"the convolution {_show(f)} needs an additive spectrum to its right")
        return _Prod(factors, ADDITIVE if additive else MULTIPLICATIVE)


def _show(node: tp.Any) -> str:
    if isinstance(node, _Comp):
        return node.label
    if isinstance(node, _Sum):
        return "(" + "+".join(_show(t) for t in node.terms) + ")"
    return "*".join(_show(f) for f in node.factors)


def parse_expression(expression: str) -> tuple[tp.Any, list[_Comp]]:
    """Parse an XSPEC model expression into a syntax tree and its components, left to right.

    Raises:
        ConfigError: naming the unknown component (and listing XSPEC's) or the syntax error.
        ImportError: when ``xspectrampoline`` is not installed.
    """
    from fspnet.physics._xspec import xspec_components

    parser = _Parser(expression, xspec_components())
    tree = parser.parse()
    if tree.kind != ADDITIVE:
        raise ConfigError(f"model.expression {expression!r}: the model must produce a spectrum (an additive component)")
    return tree, parser.leaves


# ----------------------------------------------------------------------------- the model


def _check_library(leaves: list[_Comp], abundances: str, cross_sections: str) -> list[str]:
    """Problems with the library itself: a model whose data files the bundle lacks returns zeros."""
    from fspnet.physics._xspec import xspec_evaluate

    edges = np.geomspace(0.01, 100.0, 401)
    errors = []
    for leaf in leaves:
        if leaf.kind != ADDITIVE:
            continue
        try:
            flux = xspec_evaluate(
                leaf.info, edges, np.array([p.default for p in leaf.info.params]), None, abundances, cross_sections
            )
        except ValueError as e:
            errors.append(f"model.expression: {leaf.label}: {e}")
            continue
        if not np.isfinite(flux).all() or not np.any(flux > 0):
            errors.append(
                f"model.expression: XSPEC's {leaf.info.name} returned no flux at its default parameters over 0.01-100 keV "
                "(a data file it needs is probably missing from the xspectrampoline bundle); choose another component"
            )
    return errors


@dataclasses.dataclass
class _FullParam:
    name: str  # "diskbb.Tin"
    unit: str
    default: float
    hard: tuple[float, float]
    soft: tuple[float, float]


class XspecModel(Component):
    """An XSPEC model expression evaluated with XSPEC's library, batched over spectra.

    Args:
        expression: e.g. ``"tbabs*(diskbb+powerlaw)"`` (component names without case).
        free: ``{"diskbb.Tin": (low, high, log), ...}``: the parameters that are columns of
            ``params``, with their range (bounds of the fit and of the sampler) and scale.
            They appear in XSPEC's order (left to right), whatever the dict's order.
        fixed: ``{"tbabs.nH": 0.3}``: frozen values; every parameter neither free, fixed nor
            tied is frozen at XSPEC's default (``norm`` at 1).
        ties: ``{"powerlaw.PhoIndex": "simpl.Gamma"}``: a parameter equal to another one.
        abundances: XSPEC ``abund`` table (``wilm``).
        cross_sections: XSPEC ``xsect`` table (``vern``).

    Raises:
        ConfigError: listing every unknown component or parameter with the valid ones.

    Example:
        >>> m = XspecModel("tbabs*(diskbb+powerlaw)", free={"diskbb.Tin": (0.1, 3, True),
        ...     "diskbb.norm": (1, 1e5, True)})  # doctest: +SKIP
        >>> m(energy_grid(), m.default_params(4)).shape  # doctest: +SKIP
        torch.Size([4, 2000])
    """

    chunk_rows = 64

    def __init__(
        self,
        expression: str,
        free: tp.Mapping[str, tuple[float, float, bool]] | None = None,
        fixed: tp.Mapping[str, float] | None = None,
        ties: tp.Mapping[str, str] | None = None,
        abundances: str = "wilm",
        cross_sections: str = "vern",
    ) -> None:
        self.expression = expression
        self.abundances = abundances
        self.cross_sections = cross_sections
        self._tree, self._leaves = parse_expression(expression)
        self._all: list[_FullParam] = []
        for leaf in self._leaves:
            leaf.first = len(self._all)
            for p in leaf.info.params:
                self._all.append(
                    _FullParam(f"{leaf.label}.{p.name}", p.unit, p.default, (p.hard_min, p.hard_max), (p.soft_min, p.soft_max))
                )
            if leaf.kind == ADDITIVE:
                self._all.append(_FullParam(f"{leaf.label}.norm", "", 1.0, (0.0, 1e24), (0.0, 1e24)))
        index = {p.name.lower(): i for i, p in enumerate(self._all)}
        free, fixed, ties = dict(free or {}), dict(fixed or {}), dict(ties or {})
        errors: list[str] = []

        def find(name: str, where: str) -> int | None:
            i = index.get(name.lower())
            if i is None:
                errors.append(
                    f"{where}: unknown parameter {name!r}; valid parameters of {expression!r} are {', '.join(self.all_param_names)}"
                )
            return i

        self._values = np.array([p.default for p in self._all], dtype=np.float64)
        self._free: list[int] = []
        params: list[Param] = []
        taken: dict[int, str] = {}
        for name, rng in free.items():
            i = find(name, f"sampling.params.{name}")
            if i is None:
                continue
            low, high, log = float(rng[0]), float(rng[1]), bool(rng[2])
            if not low < high or (log and low <= 0):
                errors.append(
                    f"sampling.params.{name}: needs low < high (and low > 0 when log), but got [{low}, {high}] log={log}; to freeze it use model.fixed"
                )
                continue
            taken[i] = f"sampling.params.{name}"
        for name, value in fixed.items():
            i = find(name, f"model.fixed.{name}")
            if i is not None:
                if i in taken:
                    errors.append(f"model.fixed.{name}: already set by {taken[i]}")
                taken[i] = f"model.fixed.{name}"
                self._values[i] = float(value)
        self._ties: list[tuple[int, int]] = []
        for name, other in ties.items():
            i, j = find(name, f"model.ties.{name}"), find(str(other), f"model.ties.{name}")
            if i is None or j is None:
                continue
            if i in taken:
                errors.append(f"model.ties.{name}: already set by {taken[i]}")
            if i == j:
                errors.append(f"model.ties.{name}: a parameter cannot be tied to itself")
            taken[i] = f"model.ties.{name}"
            self._ties.append((i, j))
        tied = {i for i, _ in self._ties}
        for i, j in self._ties:
            if j in tied:
                errors.append(
                    f"model.ties.{self._all[i].name}: ties to {self._all[j].name}, which is tied itself; tie both to the same free parameter"
                )
        errors += _check_library(self._leaves, abundances, cross_sections)
        if errors:
            raise ConfigError("\n".join(errors))
        for i, p in enumerate(self._all):  # free parameters in XSPEC's order
            key = next((k for k in free if k.lower() == p.name.lower()), None)
            if key is None or taken.get(i, "").startswith("model."):
                continue
            low, high, log = float(free[key][0]), float(free[key][1]), bool(free[key][2])
            default = min(max(p.default, low), high)
            if log and not low < p.default < high:
                default = float(np.sqrt(low * high))
            params.append(
                Param(default=default, bounds=(low, high), unit=p.unit, log=log, description=f"XSPEC {p.name}", name=p.name)
            )
            self._free.append(i)
        self._params = params

    # -- metadata -----------------------------------------------------------------------------
    @property
    def params(self) -> list[Param]:
        return list(self._params)

    @property
    def all_param_names(self) -> tuple[str, ...]:
        """Every parameter of the expression (free, frozen and tied), in XSPEC's order."""
        return tuple(p.name for p in self._all)

    def describe(self) -> dict[str, tp.Any]:
        """JSON-able description: expression, tables, free/frozen/tied parameters."""
        free = set(self._free)
        tied = {i: j for i, j in self._ties}
        return {
            "expression": self.expression,
            "backend": "xspec",
            "abund": self.abundances,
            "xsect": self.cross_sections,
            "free": list(self.param_names),
            "frozen": {p.name: float(self._values[i]) for i, p in enumerate(self._all) if i not in free and i not in tied},
            "ties": {self._all[i].name: self._all[j].name for i, j in tied.items()},
        }

    def full_params(self, params: np.ndarray) -> np.ndarray:
        """[N, P] free parameters -> [N, all] every parameter of the expression (XSPEC order)."""
        full = np.tile(self._values, (len(params), 1))
        full[:, self._free] = params
        for i, j in self._ties:
            full[:, i] = full[:, j]
        return full

    # -- evaluation ---------------------------------------------------------------------------
    def _forward(self, edges: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        e = edges.detach().cpu().numpy()
        key = hash(e.tobytes())
        if key != getattr(self, "_grid_key", None):  # a new grid: forget the cached components
            self._grid_key = key
            self._cache: dict[tp.Any, tp.Any] = {}
        full = self.full_params(params.detach().cpu().numpy())
        out = np.stack([self._eval(self._tree, e, row) for row in full]) if len(full) else np.zeros((0, len(e) - 1))
        return torch.from_numpy(out).to(device=params.device)

    def _eval(self, node: tp.Any, edges: np.ndarray, row: np.ndarray) -> np.ndarray:
        from fspnet.physics._xspec import xspec_evaluate

        if isinstance(node, _Comp):
            n = len(node.info.params)
            par = row[node.first : node.first + n]
            # Frozen components (and repeated rows) give the same array: reuse the last one.
            last = self._cache.get(node.first)
            if last is not None and np.array_equal(last[0], par):
                flux = last[1]
            else:
                flux = xspec_evaluate(node.info, edges, par, None, self.abundances, self.cross_sections)
                self._cache[node.first] = (par.copy(), flux)
            return flux * row[node.first + n] if node.kind == ADDITIVE else flux
        if isinstance(node, _Sum):
            return sum(self._eval(t, edges, row) for t in node.terms)  # type: ignore[return-value]
        # A product, right to left: multiplicative factors wait for the spectrum they multiply;
        # a convolution acts on everything to its right.
        spec: np.ndarray | None = None
        mult: np.ndarray | None = None
        for f in reversed(node.factors):
            if f.kind == CONVOLUTION and isinstance(f, _Comp):
                assert spec is not None  # the parser checked there is a spectrum to the right
                if mult is not None:
                    spec, mult = spec * mult, None
                par = row[f.first : f.first + len(f.info.params)]
                spec = xspec_evaluate(f.info, edges, par, spec, self.abundances, self.cross_sections)
                continue
            value = self._eval(f, edges, row)
            if f.kind == ADDITIVE:
                spec = value if mult is None else value * mult
                mult = None
            elif spec is not None:
                spec = spec * value
            else:
                mult = value if mult is None else mult * value
        return spec if spec is not None else mult  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"XspecModel({self.expression!r})"
