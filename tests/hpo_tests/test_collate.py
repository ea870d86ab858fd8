from __future__ import annotations

import json

import pytest
from optuna.trial import TrialState

from hpo.collate import collate, collated_name, main
from hpo.run import run_study
from hpo.study import load_study_config, open_study


def _weights(folder):
    return sorted(p.name for p in folder.glob("*.safetensors"))


@pytest.mark.slow
def test_collation_keeps_exactly_top_k_weights_and_is_idempotent(write_study):
    path = write_study(
        keep_top_k=2,
        config={"epochs": 9, "plots": True},
        sampler={"name": "RandomSampler", "configs": {"seed": 1}},
        tune_params={
            "fail": {"suggest": "cat", "kwargs": {"choices": [False, False, True]}, "path": "fail"},
            "lr": {"suggest": "float", "kwargs": {"low": 0.001, "high": 0.3, "log": True}, "path": "lr"},
        },
    )
    run_study(path, 8, progress=False, collate=False)
    cfg = load_study_config(path)
    study = open_study(cfg)
    first = collate(cfg, study)
    out = cfg.study_dir / "collated"
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    assert first.top_k == [t.number for t in done[:2]]
    weights = _weights(out)
    assert len(weights) == 2
    assert weights == sorted(collated_name(t, "best.safetensors", ["fail", "lr"]) for t in done[:2])
    assert weights[0].startswith(f"{done[0].value:.4g}_trial{done[0].number}_fail=False_lr=")
    plots = list(out.glob("*loss_curve.png"))
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(plots) == len(finished)
    for t in study.trials:  # weights and checkpoints of pruned and failed trials are gone
        if t.state in (TrialState.PRUNED, TrialState.FAIL):
            assert _weights(cfg.trial_dir(t.number)) == []
    assert any(t.state == TrialState.FAIL for t in study.trials)

    again = collate(cfg, study)
    assert (again.copied, again.removed) == (0, 0) and again.up_to_date == first.copied + first.up_to_date

    # A better trial arrives: the old second-best weights leave collated/, plots stay.
    run_study(path, 4, progress=False, collate=False)
    study = open_study(cfg)
    third = collate(cfg, study)
    ranked = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    assert len(_weights(out)) == 2 and third.top_k == [t.number for t in ranked[:2]]
    assert sorted(json.loads((out / ".manifest.json").read_text())) == sorted(
        p.name for p in out.iterdir() if not p.name.startswith(".")
    )


def test_collate_cli(write_study, capsys):
    path = write_study(keep_top_k=1)
    run_study(path, 2, progress=False, collate=False)
    assert main(["--study", str(path)]) == 0
    assert "top-1 weights from trials" in capsys.readouterr().out
    assert main(["--study", str(path), "--storage", "sqlite:///" + str(path.parent / "empty.db")]) == 2


def test_ranked_trials_puts_trials_breaking_a_constraint_after_those_meeting_it():
    import optuna

    from hpo._features import CONSTRAINTS_ATTR
    from hpo.collate import ranked_trials

    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value, violation in ((0.1, 0.5), (0.3, -0.2), (0.2, 0.0), (0.05, None)):
        attrs = {} if violation is None else {CONSTRAINTS_ATTR: [violation]}
        study.add_trial(optuna.create_trial(value=value, params={"x": value}, distributions=dist, user_attrs=attrs))
    # 0.05 has no constraint recorded (feasible), 0.2 sits on the bound (feasible), 0.1 breaks it
    assert [t.value for t in ranked_trials(study)] == [0.05, 0.2, 0.3, 0.1]
