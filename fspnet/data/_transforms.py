"""Transforms fitted on the training split, saved with the model and inverted on prediction.

Spectra: each non-positive bin is raised to the smallest positive value of its spectrum,
then log10, then one global min–max scaling to [0, 1]. Parameters: log10 on the configured
indices, then a z-score per parameter. Both work on torch tensors (on any device) and on
numpy arrays, and are saved as JSON (never pickled).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing as tp
from pathlib import Path

import numpy as np
import torch

from fspnet.errors import DataError
from runtools.io import write_json

__all__ = ["ParamTransform", "SpectrumTransform", "Transforms", "load_transforms"]

_Array = tp.TypeVar("_Array", torch.Tensor, np.ndarray)


def _as_tensor(x: tp.Any) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x)), True


def _back(y: torch.Tensor, was_numpy: bool) -> tp.Any:
    return y.cpu().numpy() if was_numpy else y


@dataclasses.dataclass
class SpectrumTransform:
    """Clamp, log10 and global min–max scaling of spectra.

    Args:
        log_min: smallest log10 value in the training spectra.
        log_max: largest log10 value in the training spectra.
        floor: smallest positive value in the training spectra; stands in for a spectrum
            that has no positive bin at all.
    """

    log_min: float
    log_max: float
    floor: float

    @classmethod
    def fit(cls, spectra: tp.Any) -> SpectrumTransform:
        """Fit to [N, C] training spectra.

        Raises:
            DataError: if a bin is NaN or infinite, or no bin of any spectrum is positive.
        """
        x, _ = _as_tensor(spectra)
        x = x.double()
        bad = ~torch.isfinite(x).reshape(len(x), -1).all(dim=1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise DataError(
                f"spectra: non-finite values (NaN or inf) in training rows {rows}"
                f"{' ...' if int(bad.sum()) > 5 else ''} ({int(bad.sum())} of {len(x)} rows); cannot fit the transform"
            )
        positive = x[x > 0]
        if positive.numel() == 0:
            raise DataError("spectra: no positive bin in the training split; cannot take log10")
        floor = float(positive.min())
        logs = torch.log10(_clamp(x, floor))
        lo, hi = float(logs.min()), float(logs.max())
        if hi <= lo:
            hi = lo + 1.0  # constant spectra: any non-zero scale keeps the transform invertible
        return cls(log_min=lo, log_max=hi, floor=floor)

    def __call__(self, spectra: _Array) -> _Array:
        """Map [N, C] spectra in physical units to the network's scaled log space."""
        x, was_numpy = _as_tensor(spectra)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        y = (torch.log10(_clamp(x.to(dtype), self.floor)) - self.log_min) / (self.log_max - self.log_min)
        return _back(y, was_numpy)

    def inverse(self, scaled: _Array) -> _Array:
        """Map scaled log spectra back to physical units."""
        y, was_numpy = _as_tensor(scaled)
        x = torch.pow(10.0, y * (self.log_max - self.log_min) + self.log_min)
        return _back(x, was_numpy)


def _clamp(x: torch.Tensor, floor: float) -> torch.Tensor:
    # Each spectrum's smallest positive bin replaces its non-positive bins (background-subtracted
    # counts can be zero or negative); a spectrum with none positive gets the training floor.
    # NaN and -inf are not "non-positive counts" but missing data: they pass through (as NaN)
    # so that the caller sees them, never a made-up value.
    positive = x > 0
    raise_up = (x <= 0) & torch.isfinite(x)
    big = torch.finfo(x.dtype).max
    row_min = torch.where(positive & torch.isfinite(x), x, torch.full_like(x, big)).amin(dim=-1, keepdim=True)
    row_min = torch.where(row_min == big, torch.full_like(row_min, floor), row_min)
    out = torch.where(raise_up, row_min, x)
    return torch.where(torch.isneginf(x), torch.full_like(x, float("nan")), out)


@dataclasses.dataclass
class ParamTransform:
    """log10 on ``log_params``, then a z-score per parameter.

    Args:
        log_params: indices of parameters taken in log10 first.
        mean: [P] means after the log step.
        std: [P] standard deviations after the log step (1 where a parameter is constant).
    """

    log_params: list[int]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, params: tp.Any, log_params: tp.Sequence[int] = ()) -> ParamTransform:
        """Fit to [N, P] training parameters in physical units.

        Raises:
            DataError: if a parameter is NaN or infinite, or a log-scaled one is not positive.
        """
        p, _ = _as_tensor(params)
        p = p.double()
        bad = ~torch.isfinite(p).reshape(len(p), -1).all(dim=1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise DataError(
                f"params: non-finite values (NaN or inf) in training rows {rows}"
                f"{' ...' if int(bad.sum()) > 5 else ''} ({int(bad.sum())} of {len(p)} rows); cannot fit the transform"
            )
        log_params = sorted(int(i) for i in log_params)
        for i in log_params:
            if not bool((p[:, i] > 0).all()):
                raise DataError(f"params: column {i} is log-scaled but has values <= 0 (min {float(p[:, i].min())})")
        q = _log_columns(p, log_params)
        std = q.std(dim=0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(log_params=log_params, mean=q.mean(dim=0).tolist(), std=std.tolist())

    def __call__(self, params: _Array) -> _Array:
        """Map [N, P] physical parameters to z-scores."""
        p, was_numpy = _as_tensor(params)
        dtype = p.dtype if p.is_floating_point() else torch.float32
        q = _log_columns(p.to(dtype), self.log_params)
        mean = torch.tensor(self.mean, dtype=dtype, device=p.device)
        std = torch.tensor(self.std, dtype=dtype, device=p.device)
        return _back((q - mean) / std, was_numpy)

    def inverse(self, scaled: _Array) -> _Array:
        """Map z-scores back to physical parameters."""
        z, was_numpy = _as_tensor(scaled)
        dtype = z.dtype
        mean = torch.tensor(self.mean, dtype=dtype, device=z.device)
        std = torch.tensor(self.std, dtype=dtype, device=z.device)
        q = z * std + mean
        if self.log_params:
            cols = torch.zeros(q.shape[-1], dtype=torch.bool, device=q.device)
            cols[self.log_params] = True
            q = torch.where(cols, torch.pow(10.0, q), q)
        return _back(q, was_numpy)


def _log_columns(p: torch.Tensor, log_params: tp.Sequence[int]) -> torch.Tensor:
    if not log_params:
        return p
    cols = torch.zeros(p.shape[-1], dtype=torch.bool, device=p.device)
    cols[list(log_params)] = True
    # where() evaluates both branches; keep log10 away from non-positive linear columns
    return torch.where(cols, torch.log10(torch.where(cols, p, torch.ones_like(p))), p)


@dataclasses.dataclass
class Transforms:
    """The spectrum and parameter transforms of one model, saved as ``transforms.json``.

    Example:
        >>> import numpy as np
        >>> spectra = np.random.default_rng(0).uniform(1e-3, 10, (50, 240))
        >>> params = np.random.default_rng(1).uniform(1, 5, (50, 5))
        >>> t = Transforms.fit(spectra, params, log_params=[0, 4])
        >>> bool(np.allclose(t.params.inverse(t.params(params)), params))
        True
    """

    spectra: SpectrumTransform
    params: ParamTransform | None = None
    param_names: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def fit(
        cls,
        spectra: tp.Any,
        params: tp.Any | None = None,
        log_params: tp.Sequence[int] = (),
        param_names: tp.Sequence[str] = (),
    ) -> Transforms:
        """Fit both transforms on the training split ([N, C] spectra, [N, P] params or None)."""
        return cls(
            spectra=SpectrumTransform.fit(spectra),
            params=None if params is None else ParamTransform.fit(params, log_params),
            param_names=list(param_names),
        )

    def to_dict(self) -> dict[str, tp.Any]:
        """Return the JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: tp.Mapping[str, tp.Any], *, source: str = "transforms") -> Transforms:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            DataError: naming ``source`` and the missing or malformed entry.
        """
        try:
            spectra = SpectrumTransform(**data["spectra"])
            params = None if data.get("params") is None else ParamTransform(**data["params"])
            return cls(spectra=spectra, params=params, param_names=list(data.get("param_names", [])))
        except (KeyError, TypeError) as e:
            raise DataError(f"{source}: malformed transforms ({e})") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``transforms.json`` atomically."""
        write_json(path, self.to_dict())


def load_transforms(path: str | os.PathLike[str]) -> Transforms:
    """Read a ``transforms.json`` written by :meth:`Transforms.save`.

    Raises:
        DataError: if the file is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: transforms file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    return Transforms.from_dict(data, source=str(path))
