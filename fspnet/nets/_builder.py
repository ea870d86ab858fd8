"""Build a :class:`Network` from a JSON layer list; FSP-Net's own vocabulary lives here.

:func:`build_network` sends netloader v3 files to :mod:`fspnet.nets._netloader` and builds
FSP-Net's lowercase vocabulary itself, with the sizes of FSP-Net's original layer code.

Every layer type is a function ``(layer, shape, ctx) -> (module, output_shape)`` in
``_BUILDERS`` and a dataclass in ``_LAYERS`` (its valid keys with their types, defaults and
value checks, validated by :mod:`runtools.schema` like every other config), so a new layer type
is one function and one small dataclass. Shapes exclude the batch dimension.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import typing as tp
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from fspnet.errors import NetworkConfigError
from fspnet.nets import _layers, _netloader
from fspnet.nets._network import Network, Shape
from runtools import schema

_LayerError = _netloader.LayerError


def _is_int(value: tp.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------- the key tables (schemas)
# Each layer type is a dataclass validated by runtools.schema: its fields are the valid keys,
# with their types, defaults and value checks. A required key has the default None and is
# named in ``required``; ``net.<type>`` holds defaults for every layer of that type.


def _flag(value: tp.Any) -> str | None:
    # FSP-Net's files write booleans as 0/1
    return None if value in (0, 1) else f"must be true or false (or FSP-Net's 0/1), but got {value!r}"


def _padding(value: tp.Any) -> str | None:
    ok = value == "same" or (_is_int(value) and value >= 0)
    return None if ok else f"must be 'same' or a non-negative integer, but got {value!r}"


def _bidirectional(value: tp.Any) -> str | None:
    ok = value in (None, "None", "sum", "mean", "concatenate")
    return None if ok else f"must be null, 'sum', 'mean' or 'concatenate', but got {value!r}"


def _non_empty(value: tp.Any) -> str | None:
    return None if value else "must be a non-empty list of integers, but got []"


_Flag = tp.Any  # true/false, or FSP-Net's 0/1: _flag checks it (and words the error better than a union type)
_F = schema.field


@dataclasses.dataclass
class _Layer:
    required: tp.ClassVar[tuple[str, ...]] = ()


@dataclasses.dataclass
class _Tail(_Layer):
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "the activation after the layer")


@dataclasses.dataclass
class _Linear(_Layer):
    features: int | None = _F(None, schema.positive, "output features (or give factor)")
    factor: float | None = _F(None, schema.positive, "output features as a fraction of the network's output size")
    dropout: _Flag = _F(False, _flag, "dropout (net.dropout_prob) after the layer")
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "SELU after the layer")


@dataclasses.dataclass
class _Convolutional(_Layer):
    required = ("filters",)
    filters: int | None = _F(None, schema.positive, "output channels")
    kernel: int = _F(3, schema.positive, "kernel size")
    stride: int = _F(1, schema.positive, "stride")
    padding: int | str = _F("same", _padding, "'same' or a number of samples")
    dropout: _Flag = _F(True, _flag, "channel dropout (net.dropout_prob) after the layer")
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "ELU after the layer")


@dataclasses.dataclass
class _Recurrent(_Layer):
    filters: int = _F(1, schema.positive, "hidden size")
    layers: int = _F(2, schema.positive, "stacked recurrent layers")
    bidirectional: str | None = _F(None, _bidirectional, "how to merge the two directions (null: one direction)")
    method: tp.Literal["gru", "lstm", "rnn"] = _F("gru", None, "the recurrent cell")
    dropout: _Flag = _F(True, _flag, "dropout (net.dropout_prob) between stacked layers")
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "ELU after the layer")


@dataclasses.dataclass
class _LinearUpscale(_Layer):
    activation: _Flag = _F(True, _flag, "SELU after the layer")


@dataclasses.dataclass
class _ConvUpscale(_Layer):
    required = ("filters",)
    filters: int | None = _F(None, schema.positive, "channels before the pixel shuffle (even)")
    kernel: int = _F(3, schema.positive, "kernel size")
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "ELU after the layer")


@dataclasses.dataclass
class _ConvFilters(_Layer):  # conv_transpose and conv_downscale
    required = ("filters",)
    filters: int | None = _F(None, schema.positive, "output channels")
    dropout: _Flag = _F(True, _flag, "channel dropout (net.dropout_prob) after the layer")
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "ELU after the layer")


@dataclasses.dataclass
class _ConvDepthDownscale(_Layer):
    batch_norm: _Flag = _F(False, _flag, "batch norm after the layer")
    activation: _Flag = _F(True, _flag, "ELU after the layer")


@dataclasses.dataclass
class _NoKeys(_Layer):  # upsample, pool, checkpoint
    pass


@dataclasses.dataclass
class _Reshape(_Layer):
    required = ("output",)
    output: list[int] | None = _F(None, _non_empty, "the output shape per sample (one -1 allowed)")


@dataclasses.dataclass
class _Number(_Layer):  # extract and clone
    required = ("number",)
    number: int | None = _F(None, None, "how many values")


@dataclasses.dataclass
class _Index(_Layer):
    required = ("number",)
    number: int | None = _F(None, None, "where to slice the last axis")
    greater: _Flag = _F(True, _flag, "keep the values from number on (else those before it)")


@dataclasses.dataclass
class _Squeeze(_Layer):
    required = ("squeeze", "dim")
    squeeze: _Flag | None = _F(None, _flag, "true: remove axis dim; false: insert one")
    dim: int | None = _F(None, None, "the axis, counting the batch axis")


@dataclasses.dataclass
class _Sample(_Layer):
    features: int | None = _F(None, schema.positive, "output features (or give factor)")
    factor: float | None = _F(None, schema.positive, "output features as a fraction of the network's output size")


@dataclasses.dataclass
class _Concatenate(_Layer):
    required = ("layer",)
    layer: int | None = _F(None, None, "the output to join (0: the network input, -1: the previous layer)")
    channel: _Flag = _F(True, _flag, "join along the channel axis (else the last axis)")


@dataclasses.dataclass
class _Reference(_Layer):  # shortcut and skip
    required = ("layer",)
    layer: int | None = _F(None, None, "the output to add or continue from (0: the network input)")


_LAYERS: dict[str, type[_Layer]] = {
    "linear": _Linear,
    "convolutional": _Convolutional,
    "recurrent": _Recurrent,
    "linear_upscale": _LinearUpscale,
    "conv_upscale": _ConvUpscale,
    "conv_transpose": _ConvFilters,
    "upsample": _NoKeys,
    "conv_depth_downscale": _ConvDepthDownscale,
    "conv_downscale": _ConvFilters,
    "pool": _NoKeys,
    "reshape": _Reshape,
    "extract": _Number,
    "index": _Index,
    "clone": _Number,
    "squeeze": _Squeeze,
    "sample": _Sample,
    "concatenate": _Concatenate,
    "shortcut": _Reference,
    "skip": _Reference,
    "checkpoint": _NoKeys,
}
# Older FSP-Net files name the recurrent layer 'gru' or 'GRU'; both build a 'recurrent' layer.
_ALIASES = {"gru": "recurrent", "GRU": "recurrent"}
_LAYERS.update({alias: _LAYERS[kind] for alias, kind in _ALIASES.items()})
LAYER_TYPES = tuple(_LAYERS)
_FACTOR_TYPES = ("linear", "sample")  # types whose size may be a factor of the target size


@dataclasses.dataclass
class _NetSection:
    """``net``: network-wide settings; a layer type's name holds defaults for that type."""

    description: str = _F("", None, "free text")
    dropout_prob: float = _F(0.0, schema.fraction, "the dropout probability of layers with dropout on")
    checkpoints: _Flag = _F(False, _flag, "'layer' references count checkpoint layers")


# the net section's schema: its own keys plus one optional section of defaults per layer type
_Net = dataclasses.make_dataclass(
    "_Net",
    [(kind, cls | None, _F(None, None, f"defaults for every {kind} layer")) for kind, cls in _LAYERS.items()],
    bases=(_NetSection,),
)


@dataclasses.dataclass
class _File:
    """An FSP-Net network file: ``net`` settings and the ``layers`` list."""

    net: _Net = dataclasses.field(  # type: ignore[valid-type]
        default_factory=lambda: _Net(), metadata={"doc": "network-wide settings and per-type defaults"}
    )
    layers: tp.Any = _F(None, None, "the list of layers, each an object with a 'type'")


def _validate(source: str, config: dict[str, tp.Any]) -> tuple[_NetSection, list[dict]]:
    """Check every key of the config against the schemas; resolve defaults; raise once listing every problem."""
    errors: list[str] = []
    file = schema.build(config, _File, errors)
    net: _NetSection = file.net
    # per-type defaults: the good keys a net.<type> section gives (a bad one is reported once,
    # above, at net.<type>.<key>, not again for every layer of that type)
    type_defaults: dict[str, dict[str, tp.Any]] = {}
    net_in = config.get("net")
    for kind, cls in _LAYERS.items():
        given = net_in.get(kind) if isinstance(net_in, dict) else None
        if isinstance(given, dict):
            type_defaults[kind] = {k: v for k, v in given.items() if _is_valid(k, v, cls)}
    layers_in = file.layers
    layers: list[dict] = []
    if not isinstance(layers_in, list):
        errors.append(
            f"layers: expected a list of layer objects, but got {'nothing' if layers_in is None else type(layers_in).__name__}"
        )
        layers_in = []
    for i, layer in enumerate(layers_in):
        if not isinstance(layer, dict) or "type" not in layer:
            errors.append(f"layers[{i}]: expected an object with a 'type' key, but got {layer!r}")
            continue
        kind = layer["type"]
        if not isinstance(kind, str) or kind not in _LAYERS:
            errors.append(f"layers[{i}]: unknown type {kind!r}; known types: " + ", ".join(LAYER_TYPES))
            continue
        cls = _LAYERS[kind]
        params = {**type_defaults.get(kind, {}), **{k: v for k, v in layer.items() if k != "type"}}
        layer_errors: list[str] = []
        value = schema.build(params, cls, layer_errors)
        layer_errors = [f"layers[{i}] ({kind}): {e}" for e in layer_errors]
        for key in cls.required:
            if params.get(key) is None:  # absent or null (a bad value is reported above)
                layer_errors.append(f"layers[{i}] ({kind}): missing required key '{key}'; keys: {_describe(kind)}")
        resolved = {"type": kind, **{k: getattr(value, k) for k in _field_names(cls)}}
        if kind in _FACTOR_TYPES and not layer_errors and (resolved["features"] is None) == (resolved["factor"] is None):
            layer_errors.append(f"layers[{i}] ({kind}): give exactly one of 'features' or 'factor'")
        errors += layer_errors
        layers.append(resolved)
    if errors:
        raise NetworkConfigError(f"{source}: " + f"\n{source}: ".join(errors))
    return net, layers


def _is_valid(key: str, value: tp.Any, cls: type) -> bool:
    """Whether ``{key: value}`` passes the schema ``cls``."""
    problems: list[str] = []
    schema.build({key: value}, cls, problems)
    return not problems


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _describe(kind: str) -> str:
    cls = _LAYERS[kind]
    items = [
        f"{f.name} (required)" if f.name in cls.required else f"{f.name}={json.dumps(f.default)}" for f in dataclasses.fields(cls)
    ]
    return ", ".join(["type", *items]) if items else "type (no other keys)"


@dataclasses.dataclass
class _Context:
    target: Shape | None  # the shape the network must produce; `factor` sizes are relative to it
    dropout_prob: float
    checkpoints: bool
    shapes: list[Shape]  # shapes[0] is the input; shapes[i + 1] is the output of layer i
    checkpoint_sources: list[int]  # output indices recorded by checkpoint layers


def build_network(
    config: dict[str, tp.Any] | str | os.PathLike[str],
    input_shape: tp.Sequence[int],
    output_shape: tp.Sequence[int] | None = None,
    *,
    check_output: bool = True,
) -> Network:
    """Build a network from a JSON layer list, infer every layer's shape and check the output.

    Two vocabularies load unchanged, told apart by their layer types: FSP-Net's own
    (lowercase: ``linear``, ``convolutional``, ``recurrent``, ...; see :mod:`fspnet.nets`) and
    netloader v3's (``Linear``, ``Conv``, ``ConvDownscale``, ``Recurrent``, ``Composite``, ...;
    see :mod:`fspnet.nets._netloader`). A ``factor`` sizes a layer relative to
    ``output_shape``, the shape the network must produce, as in FSP-Net.

    Args:
        config: The config dict, or the path of a JSON file holding it (composite layers of
            netloader files are looked up relative to that file).
        input_shape: Shape of one input sample without the batch dimension, e.g. (5,) for the
            decoder (parameters) or (240,) for the encoder (spectrum bins).
        output_shape: Shape one output sample must have, e.g. (240,) for the decoder or (5,)
            for the encoder; needed by layers sized with ``factor``. Size-1 axes are ignored
            when comparing, so [1, 240] fits (240,).
        check_output: Raise when the layers' output does not fit ``output_shape``. Off only
            to inspect a file whose output is wrong on purpose.

    Returns:
        The network; ``net.output_shape`` is the shape it produces for one sample and
        ``net.config`` a self-contained copy of the config (``factor`` sizes resolved,
        composite layers inlined) that rebuilds the same network from ``input_shape`` alone.

    Raises:
        NetworkConfigError: The file is missing or not JSON, a key is unknown or missing, a
            value has the wrong type, a ``layer`` reference is out of range, shapes do not
            fit, or the output is not ``output_shape``. The message names the file, the layer
            index and type, and the shapes.

    Example:
        >>> net = build_network({"layers": [{"type": "linear", "factor": 1}]}, (5,), (240,))
        >>> net.output_shape
        (240,)
    """
    source = "network config"
    base_dir: Path | None = None
    if isinstance(config, (str, os.PathLike)):
        source = str(config)
        base_dir = Path(config).parent
        config = _read_json(Path(config))
    if not isinstance(config, dict):
        raise NetworkConfigError(f"{source}: expected a JSON object with 'net' and 'layers', but got {type(config).__name__}")
    input_shape = _check_input_shape(source, input_shape)
    target = None if output_shape is None else _check_input_shape(source, output_shape, "output_shape")
    if _netloader.is_netloader(config):
        modules, shapes, resolved = _netloader.build(source, config, input_shape, target, base_dir)
    else:
        modules, shapes, resolved = _build_fspnet(source, config, input_shape, target)
    net = Network(modules, resolved, input_shape, shapes)
    if target is not None and check_output and _squeeze(net.output_shape) != _squeeze(target):
        raise NetworkConfigError(
            f"{source}: the layers produce an output of shape {list(net.output_shape)} per "
            f"sample, but this network must produce {list(target)}; layer output shapes: "
            f"{[list(shape) for shape in shapes]}"
        )
    return net


def _squeeze(shape: Shape) -> Shape:
    return tuple(d for d in shape if d != 1)


def _build_fspnet(
    source: str, config: dict[str, tp.Any], input_shape: Shape, target: Shape | None
) -> tuple[list[nn.Module], list[Shape], dict]:
    """Build FSP-Net's own (pre-netloader) vocabulary; return modules, shapes, resolved config."""
    net, layers = _validate(source, config)
    ctx = _Context(target, net.dropout_prob, bool(net.checkpoints), [input_shape], [])
    resolved = copy.deepcopy(config)
    for kind in _FACTOR_TYPES:  # sizes are resolved per layer below
        defaults = (resolved.get("net") or {}).get(kind)
        if isinstance(defaults, dict):
            defaults.pop("factor", None)
    modules: list[nn.Module] = []
    shape = input_shape
    for i, layer in enumerate(layers):
        kind = _ALIASES.get(layer["type"], layer["type"])
        try:
            if kind in _FACTOR_TYPES and layer["factor"] is not None:
                layer = {**layer, "features": _factor_size(layer["factor"], ctx), "factor": None}
                resolved["layers"][i].pop("factor", None)
                resolved["layers"][i]["features"] = layer["features"]
            module, shape = _BUILDERS[kind](layer, shape, ctx)
        except _LayerError as error:
            raise NetworkConfigError(f"{source}: layers[{i}] ({layer['type']}): {error}") from None
        modules.append(module)
        ctx.shapes.append(shape)
    return modules, ctx.shapes[1:], resolved


def _factor_size(factor: float, ctx: _Context) -> int:
    """FSP-Net's rule: ``int(factor * target size)``, the target's last axis."""
    if ctx.target is None:
        raise _LayerError(
            "'factor' sizes this layer relative to the network's output, but no "
            "output_shape was given; pass output_shape or use 'features'"
        )
    size = int(ctx.target[-1] * factor)
    if size < 1:
        raise _LayerError(f"factor {factor} of the output size {ctx.target[-1]} gives {size} features")
    return size


def _read_json(path: Path) -> tp.Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise NetworkConfigError(f"{path}: cannot read network config ({error.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise NetworkConfigError(f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None


def _check_input_shape(source: str, input_shape: tp.Sequence[int], name: str = "input_shape") -> Shape:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else ()
    if not shape or not all(_is_int(i) and i > 0 for i in shape):
        raise NetworkConfigError(
            f"{source}: {name} must be a non-empty tuple of positive "
            f"integers without the batch dimension, but got {input_shape!r}"
        )
    return shape


# ---------------------------------------------------------------------------- layer builders


def _channels(shape: Shape) -> tuple[nn.Module | None, int, int]:
    """(channel adder or None, channels, length) for layers that read [C, L]."""
    if len(shape) == 1:
        return _layers.AddChannel(), 1, shape[0]
    if len(shape) == 2:
        return None, shape[0], shape[1]
    raise _LayerError(f"needs an input of shape [C, L] or [L], but got {shape}")


def _sequence(parts: list[tuple[str, nn.Module | None]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((name, m) for name, m in parts if m is not None))


def _tail(layer: dict, ctx: _Context, channels: int, activation: nn.Module, dropout: type) -> list[tuple[str, nn.Module | None]]:
    """Optional dropout, batch norm and activation, in FSP-Net's order."""
    use_dropout = layer.get("dropout") and ctx.dropout_prob > 0
    # In place on the fresh output of the layer, dropout or batch norm before it (none of which
    # keeps its output for backward): the backward pass then takes the derivative from the
    # result instead of recomputing exp(x), ~5 % of a decoder training step at batch 1024.
    activation.inplace = True  # type: ignore[assignment]  # ELU and SELU both have it
    return [
        ("dropout", dropout(ctx.dropout_prob) if use_dropout else None),
        ("batch_norm", nn.BatchNorm1d(channels) if layer.get("batch_norm") else None),
        ("activation", activation if layer.get("activation") else None),
    ]


def _conv_length(length: int, kernel: int, stride: int, padding: int) -> int:
    out = (length + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise _LayerError(f"kernel {kernel} with padding {padding} does not fit an input of length {length}")
    return out


def _build_linear(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    in_features = shape[-1]
    features = layer["features"]
    if layer["batch_norm"] and len(shape) != 1:
        raise _LayerError(f"batch_norm needs a 1-D input, but got {shape}; add a reshape with output [-1] first")
    parts: list[tuple[str, nn.Module | None]] = [("linear", nn.Linear(in_features, features))]
    parts += _tail(layer, ctx, features, nn.SELU(), nn.Dropout)
    return _sequence(parts), (*shape[:-1], features)


def _build_convolutional(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    kernel, stride, padding = layer["kernel"], layer["stride"], layer["padding"]
    if padding == "same":
        if stride != 1:
            raise _LayerError(f"padding 'same' needs stride 1, but got stride {stride}")
        out_length = length
    else:
        out_length = _conv_length(length, kernel, stride, padding)
    conv = nn.Conv1d(channels, layer["filters"], kernel, stride=stride, padding=padding, padding_mode="replicate")
    parts = [("channel", add), ("conv", conv)]
    parts += _tail(layer, ctx, layer["filters"], nn.ELU(), nn.Dropout1d)
    return _sequence(parts), (layer["filters"], out_length)


def _build_recurrent(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    hidden = layer["filters"]
    mode = None if layer["bidirectional"] == "None" else layer["bidirectional"]
    dropout = ctx.dropout_prob if layer["dropout"] and layer["layers"] > 1 else 0.0
    kind = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[layer["method"]]
    extra = {"nonlinearity": "relu"} if layer["method"] == "rnn" else {}
    rnn = kind(
        channels, hidden, num_layers=layer["layers"], batch_first=True, dropout=dropout, bidirectional=mode is not None, **extra
    )
    out_channels = 2 * hidden if mode == "concatenate" else hidden
    # FSP-Net puts the activation before the batch norm here (after it everywhere else)
    parts = [
        ("channel", add),
        ("gru", _layers.Recurrent(rnn, mode)),
        ("activation", nn.ELU() if layer["activation"] else None),
        ("batch_norm", nn.BatchNorm1d(out_channels) if layer["batch_norm"] else None),
    ]
    return _sequence(parts), (out_channels, length)


def _build_linear_upscale(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    size = math.prod(shape)
    out_shape = (*shape[:-1], 2 * shape[-1])
    parts = [
        ("flatten", _layers.Reshape((-1,))),
        ("linear", nn.Linear(size, 2 * size)),
        ("activation", nn.SELU() if layer["activation"] else None),
        ("reshape", _layers.Reshape(out_shape)),
    ]
    return _sequence(parts), out_shape


def _build_conv_upscale(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    filters = layer["filters"]
    if filters % 2:
        raise _LayerError(f"filters must be even (pixel shuffle halves them), but got {filters}")
    conv = nn.Conv1d(channels, filters, layer["kernel"], padding="same", padding_mode="replicate")
    parts = [("channel", add), ("conv", conv)]
    parts += _tail({**layer, "dropout": False}, ctx, filters, nn.ELU(), nn.Dropout1d)
    parts.append(("shuffle", _layers.PixelShuffle1d(2)))
    return _sequence(parts), (filters // 2, 2 * length)


def _build_conv_transpose(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    conv = nn.ConvTranspose1d(channels, layer["filters"], kernel_size=2, stride=2)
    parts = [("channel", add), ("conv", conv)]
    parts += _tail(layer, ctx, layer["filters"], nn.ELU(), nn.Dropout1d)
    return _sequence(parts), (layer["filters"], 2 * length)


def _build_upsample(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    upsample = nn.Upsample(scale_factor=2, mode="linear")
    return _sequence([("channel", add), ("upsample", upsample)]), (channels, 2 * length)


def _build_conv_depth_downscale(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    parts = [("channel", add), ("conv", nn.Conv1d(channels, 1, kernel_size=1))]
    parts += _tail({**layer, "dropout": False}, ctx, 1, nn.ELU(), nn.Dropout1d)
    return _sequence(parts), (1, length)


def _build_conv_downscale(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    return _build_convolutional({**layer, "kernel": 3, "stride": 2, "padding": 1}, shape, ctx)


def _build_pool(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    if length < 2:
        raise _LayerError(f"cannot halve an input of length {length}")
    return _sequence([("channel", add), ("pool", nn.MaxPool1d(2))]), (channels, length // 2)


def _build_reshape(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    out_shape = _netloader.reshape_to(shape, list(layer["output"]), "output")
    return _layers.Reshape(out_shape), out_shape


def _build_index(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    number, greater = layer["number"], bool(layer["greater"])
    length = len(range(shape[-1])[number:] if greater else range(shape[-1])[:number])
    if length < 1:
        raise _LayerError(f"number {number} with greater={greater} leaves nothing of a last axis of {shape[-1]} (input {shape})")
    return _layers.Index(number, greater), (*shape[:-1], length)


def _build_clone(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    if not 0 < layer["number"] <= shape[-1]:
        raise _LayerError(f"number must be in [1, {shape[-1]}] for input {shape}, but got {layer['number']}")
    return _layers.Clone(layer["number"]), shape


def _build_squeeze(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    full = [-1, *shape]  # with the batch axis, as the layer's dim counts it
    dim = layer["dim"]
    try:
        if layer["squeeze"]:
            if full[dim] != 1:
                raise _LayerError(f"cannot squeeze axis {dim} of size {full[dim]} (input {shape})")
            full.pop(dim)
        else:
            full.insert(dim if dim >= 0 else len(full) + dim + 1, 1)
    except IndexError:
        raise _LayerError(f"dim {dim} is out of range for input {shape}") from None
    if not full or full[0] != -1:
        raise _LayerError(f"dim {dim} would change the batch axis")
    return _layers.Squeeze(bool(layer["squeeze"]), dim), tuple(full[1:])


def _build_sample(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    return _layers.Sample(shape[-1], layer["features"]), (*shape[:-1], layer["features"])


def _build_extract(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    if layer["number"] < 1:
        raise _LayerError(f"number must be a positive integer, but got {layer['number']}")
    if layer["number"] >= shape[-1]:
        raise _LayerError(
            f"cannot extract {layer['number']} values from a last axis of {shape[-1]} (input {shape}); at least one must remain"
        )
    return _layers.Extract(layer["number"]), (*shape[:-1], shape[-1] - layer["number"])


def _source(layer: dict, ctx: _Context) -> tuple[int, str]:
    """Resolve ``layer`` to an index into the outputs list, and describe it."""
    ref = layer["layer"]
    if ctx.checkpoints:
        marks = ctx.checkpoint_sources
        if not -len(marks) <= ref < len(marks):
            raise _LayerError(
                f"layer {ref} refers to no checkpoint; net.checkpoints is on and "
                f"{len(marks)} checkpoint layer(s) come before this one"
            )
        index = marks[ref]
    else:
        count = len(ctx.shapes)
        if not -count <= ref < count:
            raise _LayerError(
                f"layer {ref} is out of range; it must be in [{-count}, "
                f"{count - 1}] (0 is the network input, i the output of "
                f"layers[i-1], -1 the previous layer)"
            )
        index = ref % count
    what = "the network input" if index == 0 else f"layers[{index - 1}]"
    return index, what


def _build_merge(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    mode = layer["type"]
    index, what = _source(layer, ctx)
    other = ctx.shapes[index]
    if mode == "shortcut":
        try:
            out_shape = tuple(torch.broadcast_shapes(shape, other))
        except RuntimeError:
            raise _LayerError(f"cannot add shape {other} from {what} to shape {shape}") from None
    elif mode == "concatenate":
        axis = 0 if layer["channel"] else len(shape) - 1
        rest = [d for k, d in enumerate(shape) if k != axis]
        if len(other) != len(shape) or [d for k, d in enumerate(other) if k != axis] != rest:
            raise _LayerError(
                f"cannot concatenate shape {other} from {what} to shape {shape} along axis {axis}; the other axes must match"
            )
        out_shape = tuple(d + other[k] if k == axis else d for k, d in enumerate(shape))
        return _layers.Merge(mode, index, dim=axis + 1), out_shape
    else:
        out_shape = other
    return _layers.Merge(mode, index), out_shape


def _build_checkpoint(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    ctx.checkpoint_sources.append(len(ctx.shapes))  # this layer's output index
    return nn.Identity(), shape


_BUILDERS: dict[str, tp.Callable[[dict, Shape, _Context], tuple[nn.Module, Shape]]] = {
    "linear": _build_linear,
    "convolutional": _build_convolutional,
    "recurrent": _build_recurrent,
    "linear_upscale": _build_linear_upscale,
    "conv_upscale": _build_conv_upscale,
    "conv_transpose": _build_conv_transpose,
    "upsample": _build_upsample,
    "conv_depth_downscale": _build_conv_depth_downscale,
    "conv_downscale": _build_conv_downscale,
    "pool": _build_pool,
    "reshape": _build_reshape,
    "extract": _build_extract,
    "index": _build_index,
    "clone": _build_clone,
    "squeeze": _build_squeeze,
    "sample": _build_sample,
    "concatenate": _build_merge,
    "shortcut": _build_merge,
    "skip": _build_merge,
    "checkpoint": _build_checkpoint,
}
assert set(_BUILDERS) | set(_ALIASES) == set(_LAYERS)
