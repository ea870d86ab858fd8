"""fspnet.config: defaults, validation messages, overrides and dotted paths."""

from __future__ import annotations

import re

import pytest

from fspnet.config import Config, from_dict, get_path, load_config, parse_overrides, resolve, set_path
from fspnet.errors import ConfigError


def test_defaults_match_the_shipped_yaml():
    shipped = load_config("configs/fspnet.yaml")
    defaults = resolve({})
    assert shipped["training"] == defaults["training"]
    assert shipped["training"]["batch_size"] == 60
    assert shipped["data"]["generate"]["n"] > 0


def test_from_dict_fills_defaults_and_converts_numbers():
    cfg = from_dict({"training": {"learning_rate": "1e-3", "epochs": 5.0}})
    assert isinstance(cfg, Config)
    assert cfg.training.learning_rate == 1e-3
    assert cfg.training.epochs == 5 and isinstance(cfg.training.epochs, int)
    assert cfg.encoder.latent_weight == 0.01


def test_every_error_is_reported_with_its_key_path_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "stage: dec\n"
        "trainning: {}\n"
        "training:\n  batch_size: 0\n  learning_rate: fast\n  stages: [{epochs: x}]\n  device: gpu\n"
        "data:\n  subset: {n: 10, mode: rand}\n  val_fraction: 1.5\n"
    )
    with pytest.raises(ConfigError, match=r"8 error") as info:
        load_config(path)
    msg = str(info.value)
    assert f"{path}: trainning: unknown key; valid keys are stage, run_dir, resume" in msg
    assert "stage: unknown 'dec'; choose one of decoder, encoder" in msg
    assert "training.batch_size: must be > 0, but got 0" in msg
    assert "training.learning_rate: expected float, but got str 'fast'" in msg
    assert "training.stages.0.epochs: expected int, but got str 'x'" in msg
    assert "data.subset.mode: unknown 'rand'; choose one of first, random" in msg
    assert "data.val_fraction: must be in [0, 1), but got 1.5" in msg
    assert "training.device: unknown device 'gpu'; choose auto, cpu, cuda or cuda:<index>" in msg


def test_unknown_nested_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"training\.batchsize: unknown key; valid keys are epochs, batch_size"):
        from_dict({"training": {"batchsize": 3}})


def test_network_and_architecture_are_exclusive():
    with pytest.raises(ConfigError, match=r"decoder: give either network .* or architecture"):
        from_dict({"decoder": {"network": "x.json", "architecture": {"width": 3}}})


def test_wrong_section_type():
    with pytest.raises(ConfigError, match=r"training: expected a mapping, but got list"):
        from_dict({"training": [1, 2]})


def test_overrides_are_validated_like_the_file(tmp_path):
    cfg = load_config(None, {"training.learning_rate": 1e-3, "decoder.architecture.width": 64})
    assert cfg["training"]["learning_rate"] == 1e-3
    assert cfg["decoder"]["architecture"] == {"width": 64}
    with pytest.raises(ConfigError, match=r"training\.learning_rat: unknown key"):
        load_config(None, {"training.learning_rat": 1e-3})
    with pytest.raises(ConfigError, match=r"config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"the top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_set_and_get_path():
    cfg = resolve({"training": {"stages": [{"epochs": 3}]}})
    set_path(cfg, "training.stages.0.patience", 2)
    set_path(cfg, "encoder.architecture.filters", [8, 8])
    assert get_path(cfg, "training.stages.0") == {"epochs": 3, "patience": 2}
    assert get_path(cfg, "encoder.architecture.filters") == [8, 8]
    assert get_path(cfg, "data.nothing", None) is None
    with pytest.raises(KeyError, match=r"data\.nothing: no such key"):
        get_path(cfg, "data.nothing")
    with pytest.raises(TypeError, match=r"training\.batch_size is a int, not a mapping"):
        set_path(cfg, "training.batch_size.x", 1)
    with pytest.raises(IndexError, match=r"index 5 out of range"):
        set_path(cfg, "training.stages.5.epochs", 1)


def test_parse_overrides():
    assert parse_overrides(["a.b=1e-3", "c=true", "d=[1, 2]", "e=name"]) == {"a.b": 1e-3, "c": True, "d": [1, 2], "e": "name"}
    with pytest.raises(ConfigError, match=r"expected key=value"):
        parse_overrides(["novalue"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("training.learning_rate", "inf"),
        ("training.learning_rate", float("nan")),
        ("training.weight_decay", "inf"),
        ("training.min_lr", float("inf")),
        ("training.grad_clip", "NaN"),
        ("encoder.latent_weight", "-inf"),
    ],
)
def test_non_finite_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=rf"config: {re.escape(key)}: must be a finite number, but got (-?inf|nan)"):
        load_config(None, {key: value})


def test_grad_clip_must_be_positive():
    with pytest.raises(ConfigError, match=r"training\.grad_clip: must be > 0, but got 0\.0"):
        from_dict({"training": {"grad_clip": 0}})
