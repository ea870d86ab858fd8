"""The one config-validation mechanism and the one dotted-path implementation (runtools.schema)."""

from __future__ import annotations

import dataclasses
import typing as tp

import pytest

from runtools import schema
from runtools.schema import at_least, build, field, from_dict, get_path, has_path, interval, one_of, positive, set_path


class _MyError(ValueError):
    pass


@dataclasses.dataclass
class _Layer:
    width: int = field(8, at_least(1), "units")
    kind: tp.Literal["dense", "conv"] = field("dense", None, "layer kind")


@dataclasses.dataclass
class _Net:
    lr: float = field(1e-3, positive, "learning rate")
    act: str = field("relu", one_of("relu", "elu"), "activation")
    dropout: float = field(0.0, interval(0, 1), "dropout")
    layers: list[_Layer] = field([], None, "hidden layers")
    heads: dict[str, _Layer] = field({}, None, "named heads")
    tag: str | None = field(None, None, "free text")
    epochs: int = field(3, None, "epochs")


def test_defaults_and_conversion():
    net = from_dict({"lr": "1e-2", "epochs": 4.0, "layers": [{"width": 2}], "heads": {"a": {"kind": "conv"}}}, _Net)
    assert net.lr == 0.01 and net.epochs == 4 and isinstance(net.epochs, int)  # YAML's "1e-2" string, 4.0 -> 4
    assert net.layers == [_Layer(2, "dense")] and net.heads == {"a": _Layer(8, "conv")}
    assert from_dict(None, _Net) == _Net()
    a, b = _Net(), _Net()
    a.layers.append(_Layer())
    assert b.layers == []  # mutable defaults are per instance


def test_unknown_key_lists_the_valid_keys_with_its_path():
    errors: list[str] = []
    build({"lyers": [], "layers": [{"widht": 3}]}, _Net, errors)
    assert errors == [
        "lyers: unknown key; valid keys are lr, act, dropout, layers, heads, tag, epochs",
        "layers.0.widht: unknown key; valid keys are width, kind",
    ]


def test_every_error_is_collected_and_raised_once_with_the_callers_error_class():
    with pytest.raises(_MyError) as info:
        from_dict(
            {"lr": float("inf"), "act": "swish", "dropout": 1.0, "epochs": True, "layers": [{"width": 0, "kind": "rnn"}], "x": 1},
            _Net,
            source="net.yaml",
            error=_MyError,
        )
    assert str(info.value).splitlines() == [
        "net.yaml: 7 error(s) in the config:",
        "  net.yaml: x: unknown key; valid keys are lr, act, dropout, layers, heads, tag, epochs",
        "  net.yaml: lr: must be a finite number, but got inf",  # a bad value is reported once
        "  net.yaml: act: unknown 'swish'; choose one of relu, elu",
        "  net.yaml: dropout: must be in [0, 1), but got 1.0",
        "  net.yaml: layers.0.width: must be >= 1, but got 0",
        "  net.yaml: layers.0.kind: unknown 'rnn'; choose one of dense, conv",
        "  net.yaml: epochs: expected int, but got bool True",
    ]


def test_nan_is_refused_for_every_float_field():
    errors: list[str] = []
    build({"dropout": float("nan")}, _Net, errors)
    assert errors == ["dropout: must be a finite number, but got nan"]


def test_cross_field_checks_join_the_same_report():
    def check(net: _Net, errors: list[str]) -> None:
        if net.tag is None and net.layers:
            errors.append("tag: required when layers are given")

    with pytest.raises(ValueError, match=r"(?s)2 error\(s\).*lr: must be > 0, but got -1\.0.*tag: required when layers"):
        from_dict({"lr": -1, "layers": [{}]}, _Net, check=check)


def test_field_docs_are_the_valid_keys_in_order():
    assert list(schema.field_docs(_Layer)) == ["width", "kind"]
    assert schema.field_docs(_Net)["lr"] == "learning rate"


def test_dotted_paths_get_set_has():
    cfg: dict[str, tp.Any] = {"a": {"b": [1, {"c": 2}]}, "n": None}
    assert get_path(cfg, "a.b.1.c") == 2
    assert has_path(cfg, "a.b.0") and not has_path(cfg, "a.x") and not has_path(cfg, "a.b.7")
    set_path(cfg, "a.b.1.c", 5)
    set_path(cfg, "n.m", 1)  # a null on the way becomes a mapping
    set_path(cfg, "new.deep", 2)
    assert cfg["a"]["b"][1]["c"] == 5 and cfg["n"] == {"m": 1} and cfg["new"] == {"deep": 2}
    with pytest.raises(KeyError, match=r"x: no such key"):
        set_path(cfg, "x.y", 1, create=False)
    with pytest.raises(KeyError, match=r"a\.b\.1\.z: no such key"):
        get_path(cfg, "a.b.1.z")
    with pytest.raises(IndexError, match=r"a\.b\.5: index 5 out of range for a list of 2"):
        set_path(cfg, "a.b.5.c", 1)
    with pytest.raises(TypeError, match=r"a\.b\.k: 'k' indexes a list; use an integer"):
        set_path(cfg, "a.b.k.c", 1)


def test_get_path_with_a_default_never_raises():
    # fspnet's old get_path raised TypeError here although a default was given.
    assert get_path({"a": [1]}, "a.x", None) is None
    assert get_path({"a": 1}, "a.b", "d") == "d"


def test_set_path_refuses_to_replace_a_value_by_a_mapping():
    # hpo's old set_path(create=True) silently replaced the number by {"b": 2}.
    cfg = {"a": 1}
    with pytest.raises(TypeError, match=r"a is a int, not a mapping"):
        set_path(cfg, "a.b", 2, create=True)
    assert cfg == {"a": 1}


def test_fspnet_and_hpo_use_this_one_implementation():
    import fspnet.config
    import hpo.space

    for name in ("get_path", "set_path"):
        assert getattr(fspnet.config, name) is getattr(schema, name) is getattr(hpo.space, name)
    assert hpo.space.has_path is schema.has_path
