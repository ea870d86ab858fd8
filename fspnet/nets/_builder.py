"""Build a :class:`Network` from a JSON layer list in FSP-Net's vocabulary.

Every layer type is a function ``(layer, shape, ctx) -> (module, output_shape)`` in
``_BUILDERS`` and a key table in ``_SPECS`` (its valid keys and their defaults), so a new layer
type is one function and one table entry. Shapes exclude the batch dimension.
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
from torch import Tensor, nn

from fspnet.errors import NetworkConfigError
from fspnet.nets import _layers

Shape = tuple[int, ...]
_REQUIRED = object()  # marks a key without a default

# Keys every layer type accepts, and the default when a layer leaves them out.
_SPECS: dict[str, dict[str, tp.Any]] = {
    "linear": {"features": None, "factor": None, "dropout": False, "batch_norm": False,
               "activation": True},
    "convolutional": {"filters": _REQUIRED, "kernel": 3, "stride": 1, "padding": "same",
                      "dropout": True, "batch_norm": False, "activation": True},
    "gru": {"filters": None, "factor": None, "layers": 2, "bidirectional": None,
            "dropout": True, "batch_norm": False, "activation": True},
    "linear_upscale": {"activation": True},
    "conv_upscale": {"filters": _REQUIRED, "kernel": 3, "batch_norm": False, "activation": True},
    "conv_transpose": {"filters": _REQUIRED, "dropout": True, "batch_norm": False,
                       "activation": True},
    "upsample": {},
    "conv_depth_downscale": {"batch_norm": False, "activation": True},
    "conv_downscale": {"filters": _REQUIRED, "dropout": True, "batch_norm": False,
                       "activation": True},
    "pool": {},
    "reshape": {"output": _REQUIRED},
    "extract": {"number": _REQUIRED},
    "concatenate": {"layer": _REQUIRED},
    "shortcut": {"layer": _REQUIRED},
    "skip": {"layer": _REQUIRED},
    "checkpoint": {},
}
LAYER_TYPES = tuple(_SPECS)
_NET_KEYS = {"description": "", "dropout_prob": 0.0, "checkpoints": False}
_BIDIRECTIONAL = (None, "sum", "mean", "concatenate")


class _LayerError(Exception):
    """Raised inside a layer builder; the caller adds the file and layer to the message."""


def _is_int(value: tp.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: tp.Any) -> str | None:
    return None if _is_int(value) and value > 0 else "a positive integer"


def _boolean(value: tp.Any) -> str | None:
    # FSP-Net's files write booleans as 0/1
    return None if isinstance(value, bool) or value in (0, 1) else "true or false"


_CHECKS: dict[str, tp.Callable[[tp.Any], str | None]] = {
    "features": _positive_int,
    "filters": _positive_int,
    "kernel": _positive_int,
    "stride": _positive_int,
    "layers": _positive_int,
    "number": _positive_int,
    "factor": lambda v: None if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    else "a positive number",
    "padding": lambda v: None if v == "same" or (_is_int(v) and v >= 0)
    else "'same' or a non-negative integer",
    "dropout": _boolean,
    "batch_norm": _boolean,
    "activation": _boolean,
    "bidirectional": lambda v: None if v in _BIDIRECTIONAL
    else "null, 'sum', 'mean' or 'concatenate'",
    "output": lambda v: None if isinstance(v, list) and v and all(_is_int(i) for i in v)
    else "a non-empty list of integers",
    "layer": lambda v: None if _is_int(v) else "an integer",
}


@dataclasses.dataclass
class _Context:
    dropout_prob: float
    checkpoints: bool
    shapes: list[Shape]  # shapes[0] is the input; shapes[i + 1] is the output of layer i
    checkpoint_sources: list[int]  # output indices recorded by checkpoint layers


class Network(nn.Module):
    """A network built from a JSON layer list by :func:`build_network`.

    Attributes:
        config: The network config as given (a deep copy; write it to rebuild the network).
        input_shape: Shape of one input sample, without the batch dimension.
        output_shape: Shape of one output sample, without the batch dimension.
        layer_shapes: Output shape of every layer, in order.
        layers: One module per JSON layer, so ``layers[i]`` is the JSON's ``layers[i]``.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        config: dict[str, tp.Any],
        input_shape: Shape,
        layer_shapes: list[Shape],
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.config = config
        self.input_shape = input_shape
        self.layer_shapes = layer_shapes
        self.output_shape = layer_shapes[-1] if layer_shapes else input_shape
        needed = {m.source for m in layers if isinstance(m, _layers.Merge)}
        # outputs that no later layer reads are not kept, so their memory can be freed early
        self._keep = [i + 1 in needed for i in range(len(layers))]
        self._keep_input = 0 in needed

    def forward(self, x: Tensor) -> Tensor:
        """Run the network on a batch: x [N, *input_shape] -> [N, *output_shape]."""
        outputs: dict[int, Tensor] = {0: x} if self._keep_input else {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, _layers.Merge):
                x = layer(x, outputs[layer.source])
            else:
                x = layer(x)
            if self._keep[i]:
                outputs[i + 1] = x
        return x

    @property
    def extraction(self) -> Tensor | None:
        """Values split off by the last ``extract`` layer in the latest forward pass."""
        for layer in reversed(self.layers):
            if isinstance(layer, _layers.Extract):
                return layer.extracted
        return None


def build_network(
    config: dict[str, tp.Any] | str | os.PathLike[str],
    input_shape: tp.Sequence[int],
) -> Network:
    """Build a network from a JSON layer list and infer every layer's shape.

    The config is ``{"net": {...}, "layers": [{"type": ..., ...}, ...]}``. ``net`` holds
    ``dropout_prob`` (default 0: the probability used by layers with ``dropout`` on),
    ``checkpoints`` (default false: when true, the ``layer`` key of ``shortcut``,
    ``concatenate`` and ``skip`` counts ``checkpoint`` layers instead of outputs),
    ``description`` and per-type defaults (``"convolutional": {"batch_norm": true}``).
    Layer keys and defaults are listed in the package docstring of :mod:`fspnet.nets`.

    Layers that work on channels (convolutions, ``pool``, ``upsample``, ``gru``) read a
    sample of shape [C, L]; a 1-D sample [L] is given one channel first, [1, L]. ``linear``
    acts on the last axis.

    Args:
        config: The config dict, or the path of a JSON file holding it.
        input_shape: Shape of one input sample without the batch dimension, e.g. (5,) for the
            decoder (parameters) or (240,) for the encoder (spectrum bins).

    Returns:
        The network; ``net.output_shape`` is the shape it produces for one sample.

    Raises:
        NetworkConfigError: The file is missing or not JSON, a key is unknown or missing, a
            value has the wrong type, a ``layer`` reference is out of range, or shapes do
            not fit. The message names the file, the layer index and type, and the shapes.

    Example:
        >>> net = build_network({"layers": [{"type": "linear", "features": 8}]}, (5,))
        >>> net.output_shape
        (8,)
    """
    source = "network config"
    if isinstance(config, (str, os.PathLike)):
        source = str(config)
        config = _read_json(Path(config))
    if not isinstance(config, dict):
        raise NetworkConfigError(f"{source}: expected a JSON object with 'net' and 'layers', "
                                 f"but got {type(config).__name__}")
    input_shape = _check_input_shape(source, input_shape)
    net, layers = _validate(source, config)
    ctx = _Context(net["dropout_prob"], bool(net["checkpoints"]), [input_shape], [])
    modules: list[nn.Module] = []
    shape = input_shape
    for i, layer in enumerate(layers):
        try:
            module, shape = _BUILDERS[layer["type"]](layer, shape, ctx)
        except _LayerError as error:
            raise NetworkConfigError(f"{source}: layers[{i}] ({layer['type']}): {error}") from None
        modules.append(module)
        ctx.shapes.append(shape)
    return Network(modules, copy.deepcopy(config), input_shape, ctx.shapes[1:])


def _read_json(path: Path) -> tp.Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise NetworkConfigError(f"{path}: cannot read network config ({error.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise NetworkConfigError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def _check_input_shape(source: str, input_shape: tp.Sequence[int]) -> Shape:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else ()
    if not shape or not all(_is_int(i) and i > 0 for i in shape):
        raise NetworkConfigError(f"{source}: input_shape must be a non-empty tuple of positive "
                                 f"integers without the batch dimension, but got {input_shape!r}")
    return shape


def _validate(source: str, config: dict[str, tp.Any]) -> tuple[dict, list[dict]]:
    """Check every key of the config; resolve defaults; raise once listing every problem."""
    errors = []
    for key in config:
        if key not in ("net", "layers"):
            errors.append(f"unknown top-level key '{key}'; valid keys: layers, net")
    net_in = config.get("net", {})
    net = dict(_NET_KEYS)
    type_defaults: dict[str, dict] = {}
    if not isinstance(net_in, dict):
        errors.append(f"net: expected an object, but got {type(net_in).__name__}")
        net_in = {}
    for key, value in net_in.items():
        if key in _SPECS:
            if not isinstance(value, dict):
                errors.append(f"net.{key}: expected an object of {key} defaults")
                continue
            errors += _check_keys(f"net.{key}", key, value)
            type_defaults[key] = value
        elif key == "dropout_prob":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                errors.append(f"net.dropout_prob: must be a number in [0, 1), but got {value!r}")
            net[key] = value
        elif key == "checkpoints":
            if _boolean(value):
                errors.append(f"net.checkpoints: must be true or false, but got {value!r}")
            net[key] = value
        elif key == "description":
            net[key] = value
        else:
            errors.append(f"net: unknown key '{key}'; valid keys: {', '.join(sorted(_NET_KEYS))}, "
                          "or a layer type holding defaults for that type")
    layers_in = config.get("layers")
    layers: list[dict] = []
    if not isinstance(layers_in, list):
        errors.append("layers: expected a list of layer objects, "
                      f"but got {'nothing' if layers_in is None else type(layers_in).__name__}")
        layers_in = []
    for i, layer in enumerate(layers_in):
        if not isinstance(layer, dict) or "type" not in layer:
            errors.append(f"layers[{i}]: expected an object with a 'type' key, but got {layer!r}")
            continue
        kind = layer["type"]
        if not isinstance(kind, str) or kind not in _SPECS:
            errors.append(f"layers[{i}]: unknown type {kind!r}; known types: "
                          + ", ".join(LAYER_TYPES))
            continue
        params = {k: v for k, v in layer.items() if k != "type"}
        layer_errors = _check_keys(f"layers[{i}] ({kind})", kind, params)
        resolved = {"type": kind}
        for key, default in _SPECS[kind].items():
            value = params.get(key, type_defaults.get(kind, {}).get(key, default))
            if value is _REQUIRED:
                layer_errors.append(f"layers[{i}] ({kind}): missing required key '{key}'; "
                                    f"keys: {_describe(kind)}")
            resolved[key] = value
        if kind in ("linear",) and not layer_errors:
            if (resolved["features"] is None) == (resolved["factor"] is None):
                layer_errors.append(f"layers[{i}] ({kind}): give exactly one of 'features' or "
                                    "'factor'")
        if kind == "gru" and resolved["filters"] is not None and resolved["factor"] is not None:
            layer_errors.append(f"layers[{i}] ({kind}): give at most one of 'filters' or 'factor'")
        errors += layer_errors
        layers.append(resolved)
    if errors:
        raise NetworkConfigError(f"{source}: " + f"\n{source}: ".join(errors))
    return net, layers


def _check_keys(where: str, kind: str, params: dict[str, tp.Any]) -> list[str]:
    errors = []
    for key, value in params.items():
        if key not in _SPECS[kind]:
            errors.append(f"{where}: unknown key '{key}'; keys: {_describe(kind)}")
            continue
        expected = _CHECKS[key](value)
        if expected:
            errors.append(f"{where}: '{key}' must be {expected}, but got {value!r}")
    return errors


def _describe(kind: str) -> str:
    items = [f"{k} (required)" if v is _REQUIRED else f"{k}={json.dumps(v)}"
             for k, v in _SPECS[kind].items()]
    return ", ".join(["type", *items]) if items else "type (no other keys)"


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


def _tail(layer: dict, ctx: _Context, channels: int, activation: nn.Module, dropout: type
          ) -> list[tuple[str, nn.Module | None]]:
    """Optional dropout, batch norm and activation, in FSP-Net's order."""
    use_dropout = layer.get("dropout") and ctx.dropout_prob > 0
    return [
        ("dropout", dropout(ctx.dropout_prob) if use_dropout else None),
        ("batch_norm", nn.BatchNorm1d(channels) if layer.get("batch_norm") else None),
        ("activation", activation if layer.get("activation") else None),
    ]


def _conv_length(length: int, kernel: int, stride: int, padding: int) -> int:
    out = (length + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise _LayerError(f"kernel {kernel} with padding {padding} does not fit an input of "
                          f"length {length}")
    return out


def _build_linear(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    in_features = shape[-1]
    features = layer["features"] or max(1, round(in_features * layer["factor"]))
    if layer["batch_norm"] and len(shape) != 1:
        raise _LayerError(f"batch_norm needs a 1-D input, but got {shape}; add a reshape "
                          "with output [-1] first")
    parts = [("linear", nn.Linear(in_features, features))]
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
    conv = nn.Conv1d(channels, layer["filters"], kernel, stride=stride, padding=padding,
                     padding_mode="replicate")
    parts = [("channel", add), ("conv", conv)]
    parts += _tail(layer, ctx, layer["filters"], nn.ELU(), nn.Dropout1d)
    return _sequence(parts), (layer["filters"], out_length)


def _build_gru(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    add, channels, length = _channels(shape)
    hidden = layer["filters"] or max(1, round(channels * (layer["factor"] or 1)))
    mode = layer["bidirectional"]
    dropout = ctx.dropout_prob if layer["dropout"] and layer["layers"] > 1 else 0.0
    gru = nn.GRU(channels, hidden, num_layers=layer["layers"], batch_first=True,
                 dropout=dropout, bidirectional=mode is not None)
    out_channels = 2 * hidden if mode == "concatenate" else hidden
    parts = [("channel", add), ("gru", _layers.Recurrent(gru, mode))]
    parts += _tail({**layer, "dropout": False}, ctx, out_channels, nn.ELU(), nn.Dropout1d)
    return _sequence(parts), (out_channels, length)


def _build_linear_upscale(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    size = math.prod(shape)
    out_shape = (*shape[:-1], 2 * shape[-1])
    parts = [("flatten", _layers.Reshape((-1,))), ("linear", nn.Linear(size, 2 * size)),
             ("activation", nn.SELU() if layer["activation"] else None),
             ("reshape", _layers.Reshape(out_shape))]
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


def _build_conv_depth_downscale(layer: dict, shape: Shape, ctx: _Context
                                ) -> tuple[nn.Module, Shape]:
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
    output = layer["output"]
    size = math.prod(shape)
    if output.count(-1) > 1 or any(d < -1 or d == 0 for d in output):
        raise _LayerError(f"output {output} must be positive sizes with at most one -1")
    known = math.prod(d for d in output if d != -1)
    if (-1 in output and size % known) or (-1 not in output and known != size):
        raise _LayerError(f"cannot reshape {shape} ({size} values) to {output}")
    out_shape = tuple(size // known if d == -1 else d for d in output)
    return _layers.Reshape(out_shape), out_shape


def _build_extract(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    if layer["number"] >= shape[-1]:
        raise _LayerError(f"cannot extract {layer['number']} values from a last axis of "
                          f"{shape[-1]} (input {shape}); at least one must remain")
    return _layers.Extract(layer["number"]), (*shape[:-1], shape[-1] - layer["number"])


def _source(layer: dict, ctx: _Context) -> tuple[int, str]:
    """Resolve ``layer`` to an index into the outputs list, and describe it."""
    ref = layer["layer"]
    if ctx.checkpoints:
        marks = ctx.checkpoint_sources
        if not -len(marks) <= ref < len(marks):
            raise _LayerError(f"layer {ref} refers to no checkpoint; net.checkpoints is on and "
                              f"{len(marks)} checkpoint layer(s) come before this one")
        index = marks[ref]
    else:
        count = len(ctx.shapes)
        if not -count <= ref < count:
            raise _LayerError(f"layer {ref} is out of range; it must be in [{-count}, "
                              f"{count - 1}] (0 is the network input, i the output of "
                              f"layers[i-1], -1 the previous layer)")
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
        if len(other) != len(shape) or other[1:] != shape[1:]:
            raise _LayerError(f"cannot concatenate shape {other} from {what} to shape {shape} "
                              "along the first axis; the other axes must match")
        out_shape = (shape[0] + other[0], *shape[1:])
    else:
        out_shape = other
    return _layers.Merge(mode, index), out_shape


def _build_checkpoint(layer: dict, shape: Shape, ctx: _Context) -> tuple[nn.Module, Shape]:
    ctx.checkpoint_sources.append(len(ctx.shapes))  # this layer's output index
    return nn.Identity(), shape


_BUILDERS: dict[str, tp.Callable[[dict, Shape, _Context], tuple[nn.Module, Shape]]] = {
    "linear": _build_linear,
    "convolutional": _build_convolutional,
    "gru": _build_gru,
    "linear_upscale": _build_linear_upscale,
    "conv_upscale": _build_conv_upscale,
    "conv_transpose": _build_conv_transpose,
    "upsample": _build_upsample,
    "conv_depth_downscale": _build_conv_depth_downscale,
    "conv_downscale": _build_conv_downscale,
    "pool": _build_pool,
    "reshape": _build_reshape,
    "extract": _build_extract,
    "concatenate": _build_merge,
    "shortcut": _build_merge,
    "skip": _build_merge,
    "checkpoint": _build_checkpoint,
}
assert set(_BUILDERS) == set(_SPECS)
