"""netloader v3's JSON vocabulary, the format of FSP-Net's later network files.

FSP-Net moved its network builder into the ``netloader`` package (same author, MIT); its
files name layer types in CamelCase. This module reads them natively (netloader is not a
dependency; the tests use it as an oracle) and builds modules with netloader's parameters in
netloader's order, so weights map one to one.

``net`` keys: ``checkpoints`` (false; when true, ``layer`` in Shortcut/Concatenate/Skip counts
Checkpoint layers), ``description``, ``paper``, ``github``, ``version``, ``layers`` (per-type
defaults), and a layer type name holding defaults for that type (``"Conv": {"dropout": 0}``).
Every layer also accepts ``group`` (0 only), ``version`` and ``description``. Each layer type's
keys are a small dataclass (``_LAYERS``) checked by :mod:`runtools.schema`, the toolkit's one
config-validation mechanism; the table below is what they hold.

==================== ===========================================================================
``Linear``           ``features`` or ``factor`` (x the last axis of the network's output, or of
                     layer ``layer``'s output; ``flatten_target`` uses its size),
                     ``activation='SELU'`` (a torch.nn name or null), ``batch_norm=false``,
                     ``dropout=0`` (a probability). Order: linear, activation, norm, dropout.
``Conv``             ``filters`` or ``factor`` (x the channels of the output or of ``layer``),
                     ``kernel=3``, ``stride=1``, ``padding=0`` (or 'same'), ``groups=1``,
                     ``padding_mode`` (zeros; replicate for files of ``version`` < 3.10),
                     ``activation='ELU'``, ``norm`` (null, 'batch', 'layer'), ``dropout=0``.
``ConvDepth``        ``Conv`` with one group per input channel.
``ConvDownscale``    ``Conv`` with kernel = stride = ``scale`` (2), no padding.
``Recurrent``        ``filters=1`` (hidden size), ``layers=2``, ``mode='gru'`` (lstm, rnn),
                     ``bidirectional`` (null, sum, mean, concatenate), ``dropout=0`` (between
                     layers), ``activation='ELU'``, ``batch_norm=false``. Reads [C, ...] as C
                     features per step over the flattened remaining axes.
``Checkpoint``       Marks this output for ``layer`` references when checkpoints are on.
``Shortcut``         ``layer``, ``checkpoint=false``: add that output (broadcasting size 1).
``Concatenate``      ``layer``, ``checkpoint=false``, ``dim=0``: join along that sample axis.
``Skip``             ``layer``, ``checkpoint=false``: continue from that output.
``Reshape``          ``shape`` (one -1 allowed); ``factor=true`` scales it by the target shape.
``LayerNorm``        ``dims`` (leading sample axes normalised) or ``shape``.
``Scale``            ``dims``, ``scale`` (initial value), ``first=true``: learnt scale.
``DropPath``         ``prob``: stochastic depth (identity in eval mode).
``AdaptivePool``     ``shape``, ``mode='average'`` (or max), ``channels=true``.
``Composite``        ``name``: a sub-network read from ``config_dir``/name.json (relative to the
                     file, or ``composite_layers/`` beside it), or given inline as ``config``;
                     ``channels``/``shape`` set its target shape (default: its input shape).
==================== ===========================================================================

Our one extension: a Conv-family layer given a 1-D sample [L] reads it as [1, L] (netloader
needs the channel axis in the input shape), so the trainer's (240,) input works unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing as tp
from collections import OrderedDict
from pathlib import Path

from torch import nn

from fspnet.errors import NetworkConfigError
from fspnet.nets import _layers
from fspnet.nets._network import Network, Shape
from runtools import schema

# ------------------------------------------------------------------- the key tables (schemas)
# Each layer type is a dataclass validated by runtools.schema: its fields are the valid keys
# with their types and defaults (a required key has the default None and is named in
# ``required``). Values that depend on shapes or on torch (activation names, probabilities,
# minimum sizes) are checked by the layer builders below. Flags keep netloader's truthiness.

_F = schema.field


@dataclasses.dataclass
class _Layer:
    required: tp.ClassVar[tuple[str, ...]] = ()


@dataclasses.dataclass
class _Linear(_Layer):
    features: int | None = _F(None, None, "output features (or give factor)")
    layer: int | None = _F(None, None, "the output a factor refers to (default: the network's output)")
    factor: float | None = _F(None, None, "the size as a fraction of the target's last axis")
    batch_norm: tp.Any = _F(False, None, "batch norm after the activation")
    flatten_target: tp.Any = _F(False, None, "factor multiplies the target's total size")
    dropout: float = _F(0.0, None, "dropout probability")
    activation: tp.Any = _F("SELU", None, "a torch.nn activation name, or null")


@dataclasses.dataclass
class _ConvDownscale(_Layer):
    filters: int | None = _F(None, None, "output channels (or give factor)")
    layer: int | None = _F(None, None, "the output a factor refers to (default: the network's output)")
    factor: float | None = _F(None, None, "the channels as a fraction of the target's channels")
    scale: int = _F(2, None, "kernel size and stride")
    dropout: float = _F(0.0, None, "channel dropout probability")
    activation: tp.Any = _F("ELU", None, "a torch.nn activation name, or null")
    norm: str | None = _F(None, None, "null, 'batch' or 'layer'")
    padding_mode: str | None = _F(None, None, "zeros (default) or replicate (files before 3.10)")


@dataclasses.dataclass
class _ConvDepth(_Layer):
    filters: int | None = _F(None, None, "output channels (or give factor)")
    layer: int | None = _F(None, None, "the output a factor refers to (default: the network's output)")
    factor: float | None = _F(None, None, "the channels as a fraction of the target's channels")
    kernel: int = _F(3, None, "kernel size")
    stride: int = _F(1, None, "stride")
    padding: int | str = _F(0, None, "samples of padding, or 'same'")
    dropout: float = _F(0.0, None, "channel dropout probability")
    activation: tp.Any = _F("ELU", None, "a torch.nn activation name, or null")
    norm: str | None = _F(None, None, "null, 'batch' or 'layer'")
    padding_mode: str | None = _F(None, None, "zeros (default) or replicate (files before 3.10)")


@dataclasses.dataclass
class _Conv(_ConvDepth):
    groups: int = _F(1, None, "convolution groups")


@dataclasses.dataclass
class _Recurrent(_Layer):
    filters: int = _F(1, None, "hidden size")
    layers: int = _F(2, None, "stacked recurrent layers")
    mode: str = _F("gru", None, "gru, lstm or rnn")
    bidirectional: str | None = _F(None, None, "null, sum, mean or concatenate")
    dropout: float = _F(0.0, None, "dropout probability between stacked layers")
    activation: tp.Any = _F("ELU", None, "a torch.nn activation name, or null")
    batch_norm: tp.Any = _F(False, None, "batch norm after the activation")


@dataclasses.dataclass
class _Checkpoint(_Layer):
    pass


@dataclasses.dataclass
class _Reference(_Layer):  # Shortcut and Skip
    required = ("layer",)
    layer: int | None = _F(None, None, "the output to use (counts Checkpoint layers when checkpoint is on)")
    checkpoint: tp.Any = _F(False, None, "layer counts Checkpoint layers")


@dataclasses.dataclass
class _Concatenate(_Reference):
    dim: int = _F(0, None, "the sample axis to join along")


@dataclasses.dataclass
class _Reshape(_Layer):
    required = ("shape",)
    shape: list[int] | None = _F(None, None, "the output shape per sample (one -1 allowed)")
    factor: tp.Any = _F(False, None, "scale shape by the target shape")
    layer: int | None = _F(None, None, "the output whose shape factor refers to")


@dataclasses.dataclass
class _LayerNorm(_Layer):
    dims: int | None = _F(None, None, "leading sample axes normalised")
    shape: list[int] | None = _F(None, None, "the normalised shape (instead of dims)")


@dataclasses.dataclass
class _Scale(_Layer):
    required = ("dims", "scale")
    dims: int | None = _F(None, None, "sample axes the scale covers")
    scale: float | None = _F(None, None, "the initial value")
    first: tp.Any = _F(True, None, "cover the first dims axes (else the last)")


@dataclasses.dataclass
class _DropPath(_Layer):
    required = ("prob",)
    prob: float | None = _F(None, None, "the probability of dropping the path")


@dataclasses.dataclass
class _AdaptivePool(_Layer):
    required = ("shape",)
    shape: int | list[int] | None = _F(None, None, "the output length")
    channels: tp.Any = _F(True, None, "the input has a channel axis")
    mode: str | None = _F("average", None, "average or max")


@dataclasses.dataclass
class _Composite(_Layer):
    required = ("name",)
    name: str | None = _F(None, None, "the sub-network's file name without .json")
    config_dir: str = _F("", None, "the folder of the sub-network's file")
    config: tp.Any = _F(None, None, "the sub-network inline (instead of a file)")
    channels: int | None = _F(None, None, "the channels of the sub-network's target shape")
    shape: list[int] | None = _F(None, None, "the sub-network's target shape")
    defaults: tp.Any = _F(None, None, "per-type defaults for the sub-network's layers")
    checkpoint: tp.Any = _F(True, None, "netloader's checkpointing (ignored)")
    cache: tp.Any = _F(False, None, "netloader's caching (ignored)")
    root: str = _F("", None, "netloader's root folder (ignored)")


_COMMON = [  # keys every layer accepts
    ("group", tp.Any, _F(0, None, "netloader's layer group (only 0 is supported)")),
    ("version", tp.Any, _F("", None, "the netloader version that wrote the layer (X.Y.Z)")),
    ("description", tp.Any, _F("", None, "free text")),
]


def _with_common(cls: type[_Layer]) -> type[_Layer]:
    """``cls`` with the keys every layer accepts, listed after its own."""
    return dataclasses.make_dataclass(cls.__name__, _COMMON, bases=(cls,))


_LAYERS: dict[str, type[_Layer]] = {
    "Linear": _Linear,
    "Conv": _Conv,
    "ConvDepth": _ConvDepth,
    "ConvDownscale": _ConvDownscale,
    "Recurrent": _Recurrent,
    "Checkpoint": _Checkpoint,
    "Shortcut": _Reference,
    "Concatenate": _Concatenate,
    "Skip": _Reference,
    "Reshape": _Reshape,
    "LayerNorm": _LayerNorm,
    "Scale": _Scale,
    "DropPath": _DropPath,
    "AdaptivePool": _AdaptivePool,
    "Composite": _Composite,
}
_LAYERS = {kind: _with_common(cls) for kind, cls in _LAYERS.items()}
LAYER_TYPES = tuple(_LAYERS)
_SIZE_KEYS = ("factor", "layer", "flatten_target")  # dropped once a size is resolved


@dataclasses.dataclass
class _NetSection:
    """``net``: network-wide settings; a layer type's name holds defaults for that type."""

    checkpoints: tp.Any = _F(False, None, "'layer' references count Checkpoint layers")
    description: tp.Any = _F("", None, "free text")
    paper: tp.Any = _F("", None, "free text")
    github: tp.Any = _F("", None, "free text")
    version: tp.Any = _F("", None, "the netloader version that wrote the file")
    layers: dict[str, tp.Any] | None = _F(None, None, "per-type defaults, {type: {key: value}}")


# the net section's schema: its own keys plus one optional mapping of defaults per layer type
_Net = dataclasses.make_dataclass(
    "_Net",
    [(kind, dict[str, tp.Any] | None, _F(None, None, f"defaults for every {kind} layer")) for kind in _LAYERS],
    bases=(_NetSection,),
)


@dataclasses.dataclass
class _File:
    """A netloader network file: ``net`` settings and the ``layers`` list."""

    net: _Net = dataclasses.field(  # type: ignore[valid-type]
        default_factory=lambda: _Net(), metadata={"doc": "network-wide settings and per-type defaults"}
    )
    layers: tp.Any = _F(None, None, "the list of layers, each an object with a 'type'")


def reshape_to(shape: tp.Sequence[int], new: list[int], key: str) -> tuple[int, ...]:
    """The shape a sample of ``shape`` takes when reshaped to ``new`` (one ``-1`` is inferred)."""
    size = math.prod(shape)
    if new.count(-1) > 1 or any(d < -1 or d == 0 for d in new):
        raise LayerError(f"{key} {new} must be positive sizes with at most one -1")
    known = math.prod(d for d in new if d != -1)
    if (-1 in new and size % known) or (-1 not in new and known != size):
        raise LayerError(f"cannot reshape {shape} ({size} values) to {new}")
    return tuple(size // known if d == -1 else d for d in new)


class LayerError(Exception):
    """Raised inside a layer builder; the caller adds the file and layer to the message."""


def is_netloader(config: dict[str, tp.Any]) -> bool:
    """Whether a config uses netloader's vocabulary (any CamelCase netloader layer type)."""
    layers = config.get("layers")
    return isinstance(layers, list) and any(isinstance(layer, dict) and layer.get("type") in _LAYERS for layer in layers)


class _Ctx:
    def __init__(self, source: str, target: Shape | None, checkpoints: bool, input_shape: Shape, base_dir: Path | None) -> None:
        self.source = source
        self.target = target
        self.checkpoints = checkpoints
        self.shapes: list[Shape] = [input_shape]  # shapes[0] input, shapes[i + 1] layer i
        self.check: list[int] = []  # output indices of Checkpoint layers
        self.base_dir = base_dir


def build(
    source: str,
    config: dict[str, tp.Any],
    input_shape: Shape,
    target: Shape | None,
    base_dir: Path | None,
    defaults: dict[str, tp.Any] | None = None,
) -> tuple[list[nn.Module], list[Shape], dict[str, tp.Any]]:
    """Build a netloader v3 config; return the modules, layer shapes and resolved config."""
    net, _, layers = _validate(source, config, defaults)
    ctx = _Ctx(source, target, bool(net.checkpoints), input_shape, base_dir)
    resolved = copy.deepcopy(config)
    for key, value in (resolved.get("net") or {}).items():
        if key in ("Linear", "Conv", "ConvDepth", "ConvDownscale", "Reshape") and isinstance(value, dict):
            for size_key in _SIZE_KEYS:
                value.pop(size_key, None)
    modules: list[nn.Module] = []
    for i, layer in enumerate(layers):
        kind = layer["type"]
        try:
            module, shape, update = _BUILDERS[kind](layer, ctx.shapes[-1], ctx)
        except LayerError as error:
            raise NetworkConfigError(f"{source}: layers[{i}] ({kind}): {error}") from None
        if update:
            entry = resolved["layers"][i]
            for size_key in _SIZE_KEYS if kind != "Composite" else ("config_dir", "root"):
                entry.pop(size_key, None)
            entry.update(update)
        modules.append(module)
        ctx.shapes.append(shape)
    return modules, ctx.shapes[1:], resolved


def _validate(
    source: str, config: dict[str, tp.Any], defaults: dict[str, tp.Any] | None
) -> tuple[_NetSection, dict[str, dict], list[dict]]:
    """Check every key against the schemas; resolve defaults; raise once listing every problem."""
    errors: list[str] = []
    file = schema.build(config, _File, errors)
    net: _NetSection = file.net
    type_defaults: dict[str, dict] = {}
    for key in LAYER_TYPES:
        if isinstance(getattr(net, key), dict):
            type_defaults[key] = getattr(net, key)
    if net.layers:
        type_defaults.update(net.layers)
    for key, value in (defaults or {}).items():
        if key in _LAYERS and isinstance(value, dict):
            type_defaults[key] = {**type_defaults.get(key, {}), **value}
    for key, value in type_defaults.items():
        if key not in _LAYERS or not isinstance(value, dict):
            errors.append(f"net.layers.{key}: expected an object of defaults for a known layer type")
    layers_in = file.layers
    if not isinstance(layers_in, list):
        errors.append(
            f"layers: expected a list of layer objects, but got {'nothing' if layers_in is None else type(layers_in).__name__}"
        )
        layers_in = []
    layers = []
    for i, layer in enumerate(layers_in):
        if not isinstance(layer, dict) or layer.get("type") not in _LAYERS:
            kind = layer.get("type") if isinstance(layer, dict) else layer
            errors.append(
                f"layers[{i}]: unknown netloader layer type {kind!r}; known types: "
                f"{', '.join(LAYER_TYPES)} (FSP-Net's lowercase types cannot be "
                "mixed with netloader's in one file)"
            )
            continue
        kind = layer["type"]
        cls = _LAYERS[kind]
        merged = {k: v for k, v in {**type_defaults.get(kind, {}), **layer}.items() if k != "type"}
        layer_errors: list[str] = []
        value = schema.build(merged, cls, layer_errors)
        errors += [f"layers[{i}] ({kind}): {e}" for e in layer_errors]
        for key in cls.required:
            if merged.get(key) is None:
                errors.append(f"layers[{i}] ({kind}): missing required key '{key}'")
        group = getattr(value, "group", 0)
        if group not in (0, None):
            errors.append(f"layers[{i}] ({kind}): group {group!r} is not supported; only group 0 (always used)")
        layers.append({"type": kind, **{f.name: getattr(value, f.name) for f in dataclasses.fields(cls)}})
    if errors:
        raise NetworkConfigError(f"{source}: " + f"\n{source}: ".join(errors))
    return net, type_defaults, layers


# ------------------------------------------------------------------------------------ helpers


def _int(value: tp.Any, name: str, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
        raise LayerError(
            f"'{name}' must be an integer" + (f" >= {minimum}" if minimum is not None else "") + f", but got {value!r}"
        )
    return value


def _size_target(layer: dict, ctx: _Ctx) -> Shape:
    """The shape a ``factor`` refers to: layer ``layer``'s output, or the network's output."""
    if layer["layer"] is not None:
        ref = _int(layer["layer"], "layer")
        if not -len(ctx.shapes) <= ref < len(ctx.shapes):
            raise LayerError(f"layer {ref} is out of range for {len(ctx.shapes)} outputs")
        return ctx.shapes[ref]
    if ctx.target is None:
        raise LayerError(
            "'factor' sizes this layer relative to the network's output, but no "
            "output_shape was given; pass output_shape or give the size"
        )
    return ctx.target


def _activation(name: tp.Any) -> nn.Module | None:
    if not name:
        return None
    module = getattr(nn, name, None) if isinstance(name, str) else None
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise LayerError(f"activation {name!r} is not a torch.nn activation, e.g. ELU, GELU, SELU")
    return module()


def _dropout(value: tp.Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise LayerError(f"'dropout' must be a probability in [0, 1), but got {value!r}")
    return float(value)


def _version_at_least(version: tp.Any, minimum: tuple[int, ...]) -> bool:
    if not version:
        return True  # files without a version are built as the current netloader builds them
    try:
        parts = tuple(int(p) for p in str(version).split(".")[:3])
    except ValueError:
        raise LayerError(f"version {version!r} is not of the form X.Y.Z") from None
    return parts >= minimum


def _seq(parts: list[tuple[str, nn.Module | None]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((name, m) for name, m in parts if m is not None))


# ------------------------------------------------------------------------------------ builders

_Built = tuple[nn.Module, Shape, dict[str, tp.Any]]


def _linear(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    update: dict[str, tp.Any] = {}
    if layer["factor"] is not None:
        target = _size_target(layer, ctx)
        target = (math.prod(target),) if layer["flatten_target"] else target
        features = max(1, int(target[-1] * layer["factor"]))
        update = {"features": features}
    elif layer["features"] is not None:
        features = _int(layer["features"], "features", 1)
    else:
        raise LayerError("give 'features' or 'factor'")
    out = (*shape[:-1], features)
    parts = [
        ("Linear", nn.Linear(shape[-1], features)),
        ("Activation", _activation(layer["activation"])),
        ("BatchNorm", nn.BatchNorm1d(out[0]) if layer["batch_norm"] else None),
        ("Dropout", nn.Dropout(_dropout(layer["dropout"])) if layer["dropout"] else None),
    ]
    return _seq(parts), out, update


def _conv(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    kind = layer["type"]
    add = None
    if len(shape) == 1:
        add, shape = _layers.AddChannel(), (1, shape[0])
    if len(shape) != 2:
        raise LayerError(f"only 1-D convolutions are supported: the input must be [C, L] or [L], but got {list(shape)}")
    channels, length = shape
    update: dict[str, tp.Any] = {}
    if layer["factor"] is not None:
        filters = max(1, int(_size_target(layer, ctx)[0] * layer["factor"]))
        update = {"filters": filters}
    elif layer["filters"] is not None:
        filters = _int(layer["filters"], "filters", 1)
    else:
        raise LayerError("give 'filters' or 'factor'")
    if kind == "ConvDownscale":
        kernel = stride = _int(layer["scale"], "scale", 1)
        padding: tp.Any = 0
        groups = 1
    else:
        kernel, stride = _int(layer["kernel"], "kernel", 1), _int(layer["stride"], "stride", 1)
        padding = layer["padding"]
        groups = channels if kind == "ConvDepth" else _int(layer["groups"], "groups", 1)
    if channels % groups or filters % groups:
        raise LayerError(f"groups {groups} must divide the input channels ({channels}) and the filters ({filters})")
    mode = layer["padding_mode"] or ("zeros" if _version_at_least(layer["version"], (3, 10, 0)) else "replicate")
    if mode not in ("zeros", "replicate", "reflect", "circular"):
        raise LayerError(f"padding_mode must be zeros, replicate, reflect or circular, but got {mode!r}")
    pad = None
    if padding == "same":
        if stride != 1:
            raise LayerError(f"'same' padding is not supported for strides > 1 ({stride})")
        total = kernel - 1
        if total % 2 and _version_at_least(layer["version"], (3, 10, 1)):
            # netloader pads an even kernel's extra value on the right, then convolves unpadded
            pad = _layers.Pad((total // 2, total // 2 + 1), "constant" if mode == "zeros" else mode)
            padding = 0
        out_length = length
    elif isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        out_length = (length + 2 * padding - kernel) // stride + 1
        if out_length < 1:
            raise LayerError(f"kernel {kernel} with padding {padding} does not fit an input of length {length}")
    else:
        raise LayerError(f"'padding' must be 'same' or a non-negative integer, but got {padding!r}")
    norm = layer["norm"]
    if norm not in (None, "batch", "layer"):
        raise LayerError(f"norm must be null, 'batch' or 'layer', but got {norm!r}")
    parts = [
        ("Channel", add),
        ("Pad", pad),
        (
            "Conv",
            nn.Conv1d(
                channels, filters, kernel, stride=stride, padding=padding, groups=groups, padding_mode=tp.cast(tp.Any, mode)
            ),
        ),
        ("Activation", _activation(layer["activation"])),
        ("BatchNorm", nn.BatchNorm1d(filters) if norm == "batch" else None),
        ("LayerNorm", _layers.ChannelLayerNorm((filters,)) if norm == "layer" else None),
        ("Dropout", nn.Dropout1d(_dropout(layer["dropout"])) if layer["dropout"] else None),
    ]
    return _seq(parts), (filters, out_length), update


def _recurrent(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    channels, steps = shape[0], math.prod(shape[1:])
    hidden = _int(layer["filters"], "filters", 1)
    n_layers = _int(layer["layers"], "layers", 1)
    method, mode = str(layer["mode"]).lower(), layer["bidirectional"]
    if method not in ("gru", "lstm", "rnn"):
        raise LayerError(f"mode must be gru, lstm or rnn, but got {layer['mode']!r}")
    if mode not in (None, "sum", "mean", "concatenate"):
        raise LayerError(f"bidirectional must be null, sum, mean or concatenate, but got {mode!r}")
    dropout = _dropout(layer["dropout"]) if n_layers > 1 else 0.0
    rnn = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[method](
        channels,
        hidden,
        num_layers=n_layers,
        batch_first=True,
        dropout=dropout,
        bidirectional=mode is not None,
        **({"nonlinearity": "relu"} if method == "rnn" else {}),
    )
    out_channels = 2 * hidden if mode == "concatenate" else hidden
    parts = [
        ("Reshape", _layers.Reshape((channels, steps))),
        ("Recurrent", _layers.Recurrent(rnn, mode)),
        ("Activation", _activation(layer["activation"]) if method != "rnn" else None),
        ("BatchNorm", nn.BatchNorm1d(out_channels) if layer["batch_norm"] else None),
    ]
    return _seq(parts), (out_channels, steps), {}


def _checkpoint(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    ctx.check.append(len(ctx.shapes))  # this layer's output index
    return nn.Identity(), shape, {}


def _merge(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    kind = layer["type"]
    ref = _int(layer["layer"], "layer")
    if layer["checkpoint"] or ctx.checkpoints:
        if not -len(ctx.check) <= ref < len(ctx.check):
            raise LayerError(f"layer {ref} refers to no checkpoint; {len(ctx.check)} Checkpoint layer(s) come before this one")
        index = ctx.check[ref]
    else:
        if not -len(ctx.shapes) <= ref < len(ctx.shapes):
            raise LayerError(f"layer {ref} is out of range for {len(ctx.shapes)} outputs")
        index = ref % len(ctx.shapes)
    other = ctx.shapes[index]
    if kind == "Skip":
        return _layers.Merge("skip", index), other, {}
    if len(other) != len(shape):
        raise LayerError(
            f"cannot combine shape {list(other)} from output {index} with shape {list(shape)}: different numbers of axes"
        )
    if kind == "Shortcut":
        if any(a != b and 1 not in (a, b) for a, b in zip(shape, other)):
            raise LayerError(f"cannot add shape {list(other)} from output {index} to shape {list(shape)}")
        return _layers.Merge("shortcut", index), tuple(max(a, b) for a, b in zip(shape, other)), {}
    dim = _int(layer["dim"], "dim")
    axis = dim if dim >= 0 else len(shape) + dim
    if not 0 <= axis < len(shape) or any(a != b for k, (a, b) in enumerate(zip(shape, other)) if k != axis):
        raise LayerError(f"cannot concatenate shape {list(other)} from output {index} to shape {list(shape)} along axis {dim}")
    out = tuple(a + b if k == axis else a for k, (a, b) in enumerate(zip(shape, other)))
    return _layers.Merge("concatenate", index, dim=axis + 1), out, {}


def _reshape(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    new = layer["shape"]
    if not isinstance(new, list) or not new or not all(isinstance(d, int) for d in new):
        raise LayerError(f"'shape' must be a list of integers, but got {new!r}")
    update: dict[str, tp.Any] = {}
    if layer["factor"]:
        target = _size_target(layer, ctx)
        new = [int(d * t) if d != -1 else -1 for d, t in zip(new, target)]
        update = {"shape": new}
    out = reshape_to(list(shape), new, "shape")
    return _layers.Reshape(out), out, update


def _layer_norm(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    if layer["shape"]:
        norm_shape = tuple(layer["shape"])
    elif layer["dims"]:
        norm_shape = shape[: _int(layer["dims"], "dims", 1)]
    else:
        raise LayerError("give 'dims' or 'shape'")
    if tuple(shape[: len(norm_shape)]) != norm_shape:
        raise LayerError(f"shape {list(norm_shape)} is not the leading axes of {list(shape)}")
    return _layers.ChannelLayerNorm(norm_shape), shape, {}


def _scale(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    dims = _int(layer["dims"], "dims", 1)
    part = shape[:dims] if layer["first"] else shape[-dims:]
    return _layers.Scale(tuple(part), float(layer["scale"]), bool(layer["first"])), shape, {}


def _drop_path(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    return _layers.DropPath(_dropout(layer["prob"])), shape, {}


def _adaptive_pool(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    channels = bool(layer["channels"])
    if len(shape) - channels != 1:
        raise LayerError(
            f"only 1-D pooling is supported: the input must be {'[C, L]' if channels else '[L]'}, but got {list(shape)}"
        )
    size = layer["shape"]
    size = size[0] if isinstance(size, list) and len(size) == 1 else size
    size = _int(size, "shape", 1)
    if layer["mode"] not in ("average", "max", None):
        raise LayerError(f"mode must be average or max, but got {layer['mode']!r}")
    pool = nn.AdaptiveAvgPool1d(size) if layer["mode"] == "average" else nn.AdaptiveMaxPool1d(size)
    return _seq([("AdaptivePool", pool)]), (*shape[:channels], size), {}


def _composite(layer: dict, shape: Shape, ctx: _Ctx) -> _Built:
    name = layer["name"]
    sub_config, sub_source, sub_dir = layer["config"], f"{ctx.source} > {name}", ctx.base_dir
    if sub_config is None:
        path = _find_composite(str(name), str(layer["config_dir"] or ""), ctx.base_dir)
        sub_source, sub_dir = str(path), path.parent
        try:
            sub_config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise LayerError(f"cannot read composite layer {path}: {error}") from None
    if not isinstance(sub_config, dict):
        raise LayerError(f"composite layer {name!r}: expected a JSON object with 'net' and 'layers'")
    target = list(shape)
    if layer["shape"]:
        target = list(layer["shape"])
    elif layer["channels"]:
        target[0] = _int(layer["channels"], "channels", 1)
    modules, shapes, resolved = build(sub_source, sub_config, shape, tuple(target), sub_dir, layer["defaults"])
    net = Network(modules, resolved, shape, shapes)
    return net, net.output_shape, {"config": resolved}


def _find_composite(name: str, config_dir: str, base_dir: Path | None) -> Path:
    file = name if name.endswith(".json") else f"{name}.json"
    base = base_dir or Path.cwd()
    tried = [
        base / config_dir / file,
        base / "composite_layers" / file,
        Path(config_dir) / file,
        base.parent / Path(config_dir).name / file,
    ]
    for path in tried:
        if path.is_file():
            return path
    raise LayerError(f"composite layer {name!r} not found; looked for " + ", ".join(str(p) for p in dict.fromkeys(tried)))


_BUILDERS: dict[str, tp.Callable[[dict, Shape, _Ctx], _Built]] = {
    "Linear": _linear,
    "Conv": _conv,
    "ConvDepth": _conv,
    "ConvDownscale": _conv,
    "Recurrent": _recurrent,
    "Checkpoint": _checkpoint,
    "Shortcut": _merge,
    "Concatenate": _merge,
    "Skip": _merge,
    "Reshape": _reshape,
    "LayerNorm": _layer_norm,
    "Scale": _scale,
    "DropPath": _drop_path,
    "AdaptivePool": _adaptive_pool,
    "Composite": _composite,
}
assert set(_BUILDERS) == set(_LAYERS)
