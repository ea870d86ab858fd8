"""Study-file features: grid samplers, enqueue, warm start, constraints, retries, overrides, psycopg 3."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo._features import (
    CONSTRAINTS_ATTR,
    ENQUEUED_KEY,
    NATIVE_CONSTRAINTS,
    apply_overrides,
    constraint_values,
    grid_search_space,
)
from hpo.errors import StudyConfigError
from hpo.run import Worker, main, run_study
from hpo.space import parse_tune_params
from hpo.study import load_study_config, make_storage, open_study

REPO = Path(__file__).resolve().parents[2]

GRID_SPACE = {
    "lr": {"suggest": "cat", "kwargs": {"choices": [0.01, 0.05, 0.1]}, "path": "lr"},
    "momentum": {"suggest": "float", "kwargs": {"low": 0.0, "high": 0.5, "step": 0.25}, "path": "momentum"},
}
FAST = {"config": {"epochs": 2}, "pruner": "none"}


def test_grid_sampler_from_the_study_file_runs_each_point_once_and_stops(write_study):
    path = write_study(sampler="GridSampler", tune_params=GRID_SPACE, **FAST)
    cfg = load_study_config(path)
    assert cfg.max_trials == 9  # the grid's size by default
    summary = run_study(path, None, progress=False, collate=False)
    study = open_study(cfg)
    points = sorted((t.params["lr"], t.params["momentum"]) for t in study.trials)
    assert summary.stopped == "max_trials" and summary.n_complete == 9
    assert points == sorted(itertools.product([0.01, 0.05, 0.1], [0.0, 0.25, 0.5]))


def test_grid_values_can_be_listed_and_a_float_without_step_needs_them(write_study):
    space = {**GRID_SPACE, "momentum": {"suggest": "float", "kwargs": {"low": 0.0, "high": 0.9}, "path": "momentum"}}
    with pytest.raises(
        StudyConfigError,
        match=r"sampler\.configs\.search_space\.momentum: GridSampler needs a finite set of "
        r"values, but tune_params\.momentum is a float \[0\.0, 0\.9\] has no step",
    ):
        load_study_config(write_study(sampler="grid", tune_params=space))
    cfg = load_study_config(
        write_study(sampler={"name": "GridSampler", "configs": {"search_space": {"momentum": [0.1, 0.9]}}}, tune_params=space)
    )
    assert cfg.max_trials == 6
    with pytest.raises(
        StudyConfigError, match=r"sampler\.configs\.search_space\.momentum: \[1\.5\] outside tune_params\.momentum"
    ):
        load_study_config(
            write_study(sampler={"name": "GridSampler", "configs": {"search_space": {"momentum": [1.5]}}}, tune_params=space)
        )


def test_grid_search_space_derivation():
    params, errors = parse_tune_params(
        {
            "n": {"suggest": "int", "kwargs": {"low": 2, "high": 8, "step": 3}},
            "off": {"state": False, "suggest": "float", "kwargs": {"low": 0, "high": 1}},
        }
    )
    assert not errors
    assert grid_search_space({}, params) == {"n": [2, 5, 8]}


def test_brute_force_sampler_from_the_study_file(write_study):
    path = write_study(sampler={"name": "BruteForceSampler", "configs": {"seed": 1}}, tune_params=GRID_SPACE, **FAST)
    summary = run_study(path, None, progress=False, collate=False)
    study = open_study(load_study_config(path))
    assert summary.stopped == "max_trials" and summary.n_complete == 9
    assert len({(t.params["lr"], t.params["momentum"]) for t in study.trials}) == 9


@pytest.mark.slow
def test_enqueued_params_run_first_and_are_enqueued_once_by_concurrent_workers(write_study):
    path = write_study(enqueue=[{"lr": 0.0123, "momentum": 0.5}, {"lr": 0.2}], **FAST)
    code = (
        "import sys; from hpo.run import Worker; from hpo.study import load_study_config; "
        "Worker(load_study_config(sys.argv[1]), progress=False)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    cfg = load_study_config(path)
    study = open_study(cfg)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 2, "4 workers starting at once must enqueue the study file's trials once"
    assert study._storage.get_study_system_attrs(study._study_id)[ENQUEUED_KEY] == {"enqueue": 2, "warm_start": []}
    run_study(path, 3, progress=False, collate=False)
    study = open_study(cfg)
    assert study.trials[0].params == {"lr": 0.0123, "momentum": 0.5}
    assert study.trials[1].params["lr"] == 0.2 and study.trials[1].user_attrs["enqueued"] == "study.yaml:enqueue.1"
    assert "enqueued" not in study.trials[2].user_attrs


@pytest.mark.parametrize(
    "enqueue, match",
    [
        ([{"lr": 5.0}], r"enqueue\.0\.lr: 5\.0 is outside tune_params\.lr"),
        ([{"depth": 3}], r"enqueue\.0\.depth: not a tuned parameter; tuned are lr, momentum"),
        ({"lr": 0.1}, r"enqueue: must be a list"),
    ],
)
def test_bad_enqueue(write_study, enqueue, match):
    with pytest.raises(StudyConfigError, match=match):
        load_study_config(write_study(enqueue=enqueue))


def test_warm_start_enqueues_the_best_trials_of_another_study(write_study, tmp_path):
    source = write_study("source.yaml", name="source", sampler={"name": "RandomSampler", "configs": {"seed": 0}}, **FAST)
    run_study(source, 5, progress=False, collate=False)
    src_cfg = load_study_config(source)
    best = sorted(open_study(src_cfg).get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)[:2]
    path = write_study("warm.yaml", name="warm", warm_start={"study": "source", "storage": src_cfg.storage, "top_k": 2}, **FAST)
    run_study(path, 3, progress=False, collate=False)
    study = open_study(load_study_config(path))
    assert [t.params for t in study.trials[:2]] == [t.params for t in best]
    assert study.trials[0].user_attrs["enqueued"] == f"warm_start:source#{best[0].number}"
    missing = write_study("missing.yaml", name="cold", warm_start={"study": "nope", "storage": src_cfg.storage})
    with pytest.raises(StudyConfigError, match=r"missing\.yaml: warm_start\.study: no study 'nope' in sqlite"):
        Worker(load_study_config(missing), progress=False)


def test_constraints_are_recorded_and_read_by_the_sampler(write_study):
    path = write_study(
        constraints=[{"metric": "lr", "max": 0.05}, {"metric": "val_loss", "min": 0.0}],
        sampler={"name": "TPESampler", "configs": {"n_startup_trials": 2, "seed": 0}},
        **FAST,
    )
    run_study(path, 4, progress=False, collate=False)
    study = open_study(load_study_config(path))
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        expected = [t.params["lr"] - 0.05, -t.value]
        assert t.user_attrs[CONSTRAINTS_ATTR] == pytest.approx(expected)
        # Where Optuna's samplers read them: trial.constraints (Optuna >= 5) or constraints_func's system attr.
        stored = t.constraints if NATIVE_CONSTRAINTS else dict(zip(["lr<=0.05", "val_loss>=0.0"], t.system_attrs["constraints"]))
        assert stored == pytest.approx({"lr<=0.05": expected[0], "val_loss>=0.0": expected[1]})


@pytest.mark.parametrize(
    "sections, match",
    [
        ({"warm_start": {"study": "old", "top_k": 0}}, r"warm_start\.top_k: must be >= 1, but got 0"),
        (
            {"warm_start": {"study": "old", "storage": "old.db"}},
            r"warm_start\.storage: must be a SQLAlchemy URL or journal:PATH \(default: this study's storage\), but got 'old\.db'",
        ),
        (
            {"warm_start": {"top_k": 2, "studies": ["a"]}},
            r"warm_start\.studies: unknown key; valid keys are study, storage, top_k(.|\n)*warm_start\.study: required",
        ),
        ({"constraints": [{"metric": "n_weights", "max": "big"}]}, r"constraints\.0\.max: expected float, but got str 'big'"),
        (
            {"constraints": [{"metric": "n_weights", "min": float("inf")}]},
            r"constraints\.0\.min: must be a finite number, but got inf",
        ),
        ({"max_retries": -1}, r"max_retries: must be >= 0, but got -1"),
        ({"artifacts": "yes"}, r"artifacts: expected bool, but got str 'yes'"),
    ],
)
def test_bad_feature_sections_name_the_key(write_study, sections, match):
    # the fixed-key sections are checked by runtools.schema: every problem names its key path
    with pytest.raises(StudyConfigError, match=match):
        load_study_config(write_study(**sections))


def test_constraint_from_a_yaml_float_string(write_study):
    # YAML 1.1 reads 1e5 as a string; the schema reads it as the number the user meant
    cfg = load_study_config(write_study(constraints=[{"metric": "n_weights", "max": "1e5"}]))
    assert constraint_values(cfg.features.constraints, {"n_weights": 2e5}) == [1e5]


def test_bad_constraints(write_study):
    with pytest.raises(StudyConfigError, match=r"constraints\.0: give max and/or min(.|\n)*constraints\.1\.maximum: unknown key"):
        load_study_config(write_study(constraints=[{"metric": "n_weights"}, {"metric": "x", "max": 1, "maximum": 2}]))


def test_a_trial_that_raises_is_retried_with_its_params_up_to_max_retries(write_study):
    space = {"fail": {"suggest": "cat", "kwargs": {"choices": [True]}, "path": "fail"}, **GRID_SPACE}
    path = write_study(max_retries=2, tune_params=space, sampler={"name": "RandomSampler", "configs": {"seed": 0}}, **FAST)
    summary = run_study(path, 3, progress=False, collate=False)
    study = open_study(load_study_config(path))
    trials = study.trials
    assert summary.n_failed == 3 and len(trials) == 3 and summary.n_retries == 0
    assert trials[1].params == trials[0].params and trials[2].params == trials[0].params
    assert trials[1].user_attrs["retry_of"] == 0 and trials[2].user_attrs["retry_of"] == 1
    assert trials[0].user_attrs["retried_because"].startswith("RuntimeError: linear_regression: failing")
    assert trials[1].user_attrs["result"]["seed"] == trials[0].user_attrs["result"]["seed"]  # the same experiment
    assert "retried_because" not in trials[2].user_attrs  # 2 retries, then no more
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_bad_configurations_and_pruned_trials_are_not_retried(write_study):
    path = write_study(max_retries=2, metric="no_such_metric", **FAST)
    run_study(path, 1, progress=False, collate=False)
    study = open_study(load_study_config(path))
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert "retried_because" not in study.trials[0].user_attrs
    path = write_study(
        "pruned.yaml",
        name="pruned",
        max_retries=2,
        config={"epochs": 3},
        pruner={"name": "ThresholdPruner", "configs": {"upper": 0.0}},
    )
    run_study(path, 2, progress=False, collate=False)
    study = open_study(load_study_config(path))
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2


def test_apply_overrides():
    raw = {"sampler": "tpe", "config": {"epochs": 9, "training.lr": 0.1}, "n_trials": 4}
    out = apply_overrides(raw, ["sampler.configs.multivariate=true", "config.training.lr=0.5", "n_trials=2", "timeout="])
    assert out == {
        "sampler": {"name": "tpe", "configs": {"multivariate": True}},
        "config": {"epochs": 9, "training": {"lr": 0.5}},
        "n_trials": 2,
        "timeout": None,
    }
    assert raw["n_trials"] == 4
    with pytest.raises(StudyConfigError, match=r"--set 'n_trials': expected key\.path=value"):
        apply_overrides(raw, ["n_trials"])
    with pytest.raises(StudyConfigError, match=r"--set n_trials\.x: n_trials is 4, not a mapping"):
        apply_overrides(raw, ["n_trials.x=1"])


def test_apply_overrides_indexes_lists():
    # The study file's own setter called .get on a list: --set enqueue.0.lr=... ended in an AttributeError.
    raw = {"enqueue": [{"lr": 0.1}, {"lr": 0.3}]}
    assert apply_overrides(raw, ["enqueue.1.lr=0.2"]) == {"enqueue": [{"lr": 0.1}, {"lr": 0.2}]}
    with pytest.raises(StudyConfigError, match=r"--set enqueue\.5\.lr: enqueue\.5: index 5 out of range for a list of 2"):
        apply_overrides(raw, ["enqueue.5.lr=0.2"])


def test_command_line_overrides_for_one_run(write_study, capsys):
    path = write_study(config={"epochs": 9})
    rc = main(
        [
            "--study",
            str(path),
            "--sampler",
            "RandomSampler",
            "--pruner",
            "none",
            "--set",
            "config.epochs=2",
            "--set",
            "n_trials=2",
            "--no-progress",
            "--no-collate",
        ]
    )
    assert rc == 0
    study = open_study(load_study_config(path))
    assert len(study.trials) == 2 and all(len(t.intermediate_values) == 2 for t in study.trials)
    assert load_study_config(path).base_config["epochs"] == 9  # the file is unchanged
    rc = main(["--study", str(path), "--set", "sampler.configs.bogus=1", "--n-trials", "1", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error(s) in the study file with --set sampler.configs.bogus=1:" in err
    assert "sampler.configs.bogus: unknown argument of TPESampler" in err
    assert main(["--study", str(path), "--pruner", "nopes", "--n-trials", "1", "--no-progress"]) == 2
    assert "pruner.name: unknown 'nopes'" in capsys.readouterr().err


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgresql_drivers(fresh_pg, driver, write_study):
    import sqlalchemy

    pytest.importorskip(driver)
    url = sqlalchemy.engine.make_url(fresh_pg).set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    storage = make_storage(url)
    study = optuna.create_study(storage=storage, study_name=f"drivers-{driver}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name=f"drivers-{driver}", storage=make_storage(url)).trials) == 2
    assert type(storage.engine.dialect).driver == driver
    # The whole worker: study lock (advisory lock), create-or-load, enqueue, trials.
    path = write_study(name=f"pg-{driver}", enqueue=[{"lr": 0.01, "momentum": 0.1}], **FAST)
    summary = run_study(path, 2, storage=url, progress=False, collate=False)
    assert summary.n_complete == 2
    assert optuna.load_study(study_name=f"pg-{driver}", storage=make_storage(url)).trials[0].params == {
        "lr": 0.01,
        "momentum": 0.1,
    }


def test_one_log_line_per_finished_trial(write_study, caplog):
    space = {"fail": {"suggest": "cat", "kwargs": {"choices": [False, True]}, "path": "fail"}, **GRID_SPACE}
    path = write_study(tune_params=space, enqueue=[{"fail": False, "lr": 0.05, "momentum": 0.25}, {"fail": True}], **FAST)
    with caplog.at_level("INFO", logger="hpo.trials"):
        run_study(path, 2, progress=False, collate=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "hpo.trials"]
    assert len(lines) == 2
    assert (
        lines[0].startswith("trial 0 COMPLETE value=")
        and " epochs=2 " in lines[0]
        and lines[0].endswith("fail=False lr=0.05 momentum=0.25")
    )
    assert lines[1].startswith("trial 1 FAIL ") and "error=RuntimeError: linear_regression: failing at epoch 0" in lines[1]
