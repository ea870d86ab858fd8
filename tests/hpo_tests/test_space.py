from __future__ import annotations

import optuna
import pytest

from hpo.space import apply_params, get_path, has_path, parse_tune_params, set_path, suggest


def spec(**kw):
    return {"p": {"state": True, "suggest": "float", "kwargs": {"low": 0.1, "high": 1.0}, "path": "a.b", **kw}}


def test_valid_params_parse_and_suggest():
    params, errors = parse_tune_params(
        {
            "lr": {"suggest": "float", "kwargs": {"low": 1e-4, "high": 1e-2, "log": True}, "path": "optimizer.lr"},
            "layers": {"suggest": "int", "kwargs": {"low": 1, "high": 4, "step": 1}, "path": "model.layers"},
            "act": {"suggest": "cat", "kwargs": {"choices": ["relu", "elu"]}, "path": "model.activation"},
            "off": {"state": False, "suggest": "int", "kwargs": {"low": 1, "high": 2}},
        }
    )
    assert errors == []
    assert [p.name for p in params] == ["lr", "layers", "act", "off"]
    assert params[3].path == "off" and params[3].state is False
    trial = optuna.trial.FixedTrial({"lr": 1e-3, "layers": 2, "act": "elu"})
    values = {p.name: suggest(trial, p) for p in params if p.state}
    cfg = apply_params({"optimizer": {"lr": 0.1}, "model": {"layers": 1, "activation": "relu"}, "off": 7}, params, values)
    assert cfg == {"optimizer": {"lr": 1e-3}, "model": {"layers": 2, "activation": "elu"}, "off": 7}


@pytest.mark.parametrize(
    ("change", "key", "match"),
    [
        ({"suggest": "floats"}, "tune_params.p.suggest", "unknown 'floats'; choose one of int, float, cat"),
        ({"kwargs": {"low": 2.0, "high": 1.0}}, "tune_params.p.kwargs.low", r"low must be <= high, but got low=2.0 > high=1.0"),
        ({"kwargs": {"low": 0.0, "high": 1.0, "log": True}}, "tune_params.p.kwargs.low", "low must be > 0 when log is true"),
        ({"kwargs": {"high": 1.0}}, "tune_params.p.kwargs.low", "required for suggest: float"),
        ({"kwargs": {"low": "a", "high": 1.0}}, "tune_params.p.kwargs.low", "must be a finite number"),
        ({"kwargs": {"low": 0.1, "high": 1.0, "bogus": 1}}, "tune_params.p.kwargs.bogus", "unknown key for suggest: float"),
        ({"state": "yes"}, "tune_params.p.state", "must be true or false"),
        ({"path": ""}, "tune_params.p.path", "must be a dotted config key"),
        ({"suggest": "cat", "kwargs": {"choices": []}}, "tune_params.p.kwargs.choices", "must be a non-empty list"),
        ({"extra": 1}, "tune_params.p.extra", "unknown key; valid keys are state, suggest, kwargs, path"),
    ],
)
def test_bad_params_name_the_key(change, key, match):
    params, errors = parse_tune_params(spec(**change))
    assert params == []
    keys = [k for k, _ in errors]
    assert key in keys
    assert any(match in m for k, m in errors if k == key)


def test_int_requires_integers():
    _, errors = parse_tune_params({"n": {"suggest": "int", "kwargs": {"low": 1.5, "high": 3}}})
    assert errors == [("tune_params.n.kwargs.low", "must be an integer, but got 1.5")]


def test_dotted_paths():
    cfg = {"a": {"b": [1, {"c": 2}]}}
    assert get_path(cfg, "a.b.1.c") == 2
    assert has_path(cfg, "a.b.0") and not has_path(cfg, "a.x")
    set_path(cfg, "a.b.1.c", 5)
    assert cfg["a"]["b"][1]["c"] == 5
    with pytest.raises(KeyError, match="x: no such key"):
        set_path(cfg, "x.y", 1, create=False)
    set_path(cfg, "x.y", 1, create=True)
    assert cfg["x"] == {"y": 1}
