"""The FSP-Net campaign: its study files, the pruning benchmark's numbers, the campaign script."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from fspnet.data import write_dataset
from hpo.study import load_study_config
from tests.fspnet_tests.conftest import make_dataset

REPO = Path(__file__).resolve().parents[2]
STUDIES = {stage: REPO / "studies" / f"fspnet_{stage}.yaml" for stage in ("decoder", "encoder")}
REQUIRED = {
    "decoder": {
        "decoder.architecture.width",
        "decoder.architecture.dense_layers",
        "decoder.architecture.residual_layers",
        "decoder.architecture.gru",
        "decoder.architecture.dropout_prob",
        "training.learning_rate",
        "training.batch_size",
        "training.weight_decay",
        "training.fine_tune_worst",
    },
    "encoder": {
        "encoder.architecture.conv_blocks",
        "encoder.architecture.base_filters",
        "encoder.architecture.kernel",
        "encoder.architecture.dense_width",
        "training.learning_rate",
        "training.batch_size",
        "encoder.latent_weight",
        "training.fine_tune_worst",
    },
}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench_pruning", REPO / "benchmarks" / "bench_pruning.py")
campaign = _load("campaign", REPO / "scripts" / "campaign.py")


@pytest.mark.parametrize("stage", ["decoder", "encoder"])
def test_study_files_validate_and_are_sized_as_documented(stage):
    cfg = load_study_config(STUDIES[stage])
    raw = yaml.safe_load(STUDIES[stage].read_text())
    assert {p["path"] for p in raw["tune_params"].values() if p["state"]} >= REQUIRED[stage]
    assert raw["pruner"]["name"] == "HyperbandPruner"
    # Hyperband's largest rung is a whole trial: the first stage plus the worst-N fine-tuning
    training = raw["config"]["training"]
    assert raw["pruner"]["configs"]["max_resource"] == training["epochs"] + training["fine_tune_epochs"]
    assert raw["max_trials"] >= 40 and 2 * raw["n_trials"] >= raw["max_trials"]  # 2 workers reach max_trials
    assert cfg.base_config["stage"] == stage and cfg.base_config["data"]["subset"]["n"] > 0
    if stage == "encoder":  # trains through the decoder study's final training
        assert cfg.base_config["encoder"]["decoder_run"] == "outputs/fspnet_decoder/best/seed-0"


def test_pruning_numbers_from_hand_made_curves():
    curves = {
        "nop_tpe": bench.Curve("nop_tpe", epochs=[10, 10, 10, 10], values=[0.5, 0.3, 0.4, 0.2]),
        "hb_tpe": bench.Curve("hb_tpe", epochs=[10, 1, 3, 10, 1], values=[0.5, None, None, 0.199, None]),
        "hb_random": bench.Curve("hb_random", epochs=[1, 1, 10], values=[None, None, 0.25]),
    }
    s = bench.summarise(curves)
    assert s["target"] == 0.2 and s["budget"] == 12
    hb = s["runs"]["hb_tpe"]
    assert hb["total_epochs"] == 25 and hb["complete"] == 2 and hb["best"] == 0.199
    assert hb["reach"]["0"] == {"epochs_to_target": 24, "fraction_of_reference_epochs": 24 / 40}
    assert s["runs"]["nop_tpe"]["reach"]["0"]["epochs_to_target"] == 40
    assert s["runs"]["hb_random"]["reach"]["0"]["epochs_to_target"] is None
    assert s["runs"]["hb_random"]["reach"]["0.05"]["epochs_to_target"] is None  # 0.25 > 0.21
    assert s["runs"]["nop_tpe"]["best_at_budget"] == 0.5 and s["runs"]["hb_random"]["best_at_budget"] == 0.25
    assert math.isinf(s["runs"]["hb_tpe"]["best_at_budget"]) is False and s["runs"]["hb_tpe"]["best_at_budget"] == 0.5
    table = bench.format_table(s)
    assert "| hb_tpe | 5 (2) | 25 | 0.199 | 0.5 | 24 (60 %) |" in table and "not reached" in table
    with pytest.raises(ValueError, match="the reference run 'nop_tpe' is missing; runs are hb_tpe"):
        bench.summarise({"hb_tpe": curves["hb_tpe"]})


def test_campaign_dry_run_lists_the_toolkit_commands_in_order(capsys):
    assert campaign.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    names = [line[2:].split(":")[0] for line in out.splitlines() if line.startswith("# ")]
    assert names[:8] == [
        "synth-train",
        "synth-heldout",
        "decoder-study",
        "decoder-report",
        "decoder-best",
        "encoder-study",
        "encoder-report",
        "encoder-best",
    ]
    assert names[-2:] == ["compare", "install"] and "pruning" in names and "default-decoder-seed-1" in names
    assert "python -m hpo.launch --study studies/fspnet_decoder.yaml --executor local --workers 2" in out
    assert "python -m hpo.train_best --study studies/fspnet_encoder.yaml --seeds 2" in out
    # the decoder table: every seed's found and default decoder through fspnet.evaluate
    for label, run in (("found", "outputs/fspnet_decoder/best"), ("default", "outputs/campaign/default_decoder")):
        assert (
            f"python -m fspnet.evaluate --run {run}/seed-1 --data data/campaign/heldout.h5 "
            f"--out outputs/campaign/evaluation/decoder-{label}/seed-1"
        ) in out
    # one installer: hpo.train_best --install of the seeds as one ensemble, installed and evaluated
    # first under the campaign's outputs, then shipped with that evaluation beside it
    assert names.index("ensemble") < names.index("evaluate-ensemble") < names.index("install")
    assert (
        "python -m hpo.train_best --study studies/fspnet_encoder.yaml --seeds 2 --install outputs/campaign/ensemble "
        "--install-seed 0 --ensemble\n"
    ) in out
    assert "python -m fspnet.evaluate --run outputs/campaign/ensemble --data data/campaign/heldout.h5" in out
    assert out.rstrip().splitlines()[-1] == (
        "OMP_NUM_THREADS=2 python -m hpo.train_best --study studies/fspnet_encoder.yaml --seeds 2 --install fspnet/pretrained "
        "--install-seed 0 --ensemble --evaluation outputs/campaign/evaluation/ensemble/summary.json"
    )
    assert "<internal>" not in out and "study_provenance" not in (REPO / "scripts" / "campaign.py").read_text()
    # the default networks get the winners' most epochs (train_best's epochs + fine-tuning)
    dec = yaml.safe_load(STUDIES["decoder"].read_text())["train_best"]["config"]["training"]
    assert "--stage decoder --run-dir outputs/campaign/default_decoder/seed-0" in out
    assert f"training.epochs={dec['epochs'] + dec['fine_tune_epochs']}" in out
    # --threads 1: every step on one torch thread (idle OpenMP threads spin when steps share cores)
    assert campaign.main(["--dry-run", "--threads", "1"]) == 0
    assert "OMP_NUM_THREADS=2" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        campaign.main(["--dry-run", "--only", "decoder-stdy"])
    assert "--only: unknown step 'decoder-stdy'; the steps are synth-train" in capsys.readouterr().err


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    path = tmp_path / "tiny.h5"
    write_dataset(path, make_dataset(160))
    return path


def _smoke(stage: str, out: Path, data: Path, extra: list[str]) -> dict:
    from hpo.run import main

    sets = [
        f"output_dir={out}",
        "max_trials=2",
        "timeout=null",
        f"config.data.path={data}",
        "config.data.generate=null",
        "config.data.subset={n: 120, mode: first, seed: 0}",
        "config.training.epochs=1",
        "config.training.fine_tune_epochs=1",
        "config.training.plots=false",
        "pruner.configs.max_resource=2",
        "sampler.configs.n_startup_trials=1",
        *extra,
    ]
    argv = ["--study", str(STUDIES[stage]), "--n-trials", "2", "--no-progress", "--no-collate"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    cfg = load_study_config(STUDIES[stage], overrides=sets, check_trainable=False)
    from hpo.study import open_study

    return {t.number: t for t in open_study(cfg).get_trials()}


@pytest.mark.slow
def test_two_trial_smoke_runs_of_both_studies(tiny_data, tmp_path):
    # the small networks keep it fast; every other setting is the study file's
    dec = _smoke(
        "decoder",
        tmp_path / "out",
        tiny_data,
        [
            "tune_params.width.kwargs.choices=[16, 32]",
            "tune_params.gru.kwargs.choices=[false]",
            "tune_params.fine_tune_worst.kwargs.choices=[0, 20]",
            "enqueue=[]",  # FSP-Net's settings lie outside these narrowed choices
        ],
    )
    assert dec[0].state.name == "COMPLETE" and dec[1].state.name in ("COMPLETE", "PRUNED")  # none failed
    decoder_run = tmp_path / "out" / "fspnet_decoder" / "trials" / "0"
    assert json.loads((decoder_run / "run.json").read_text())["stage"] == "decoder"
    enc = _smoke(
        "encoder",
        tmp_path / "out",
        tiny_data,
        [
            f"config.encoder.decoder_run={decoder_run}",
            "tune_params.conv_blocks.kwargs.high=2",
            "tune_params.base_filters.kwargs.choices=[4]",
            "tune_params.max_filters.kwargs.choices=[8]",
            "tune_params.dense_width.kwargs.choices=[16]",
            "tune_params.fine_tune_worst.kwargs.choices=[20]",
            "enqueue=[]",
        ],
    )
    assert enc[0].state.name == "COMPLETE" and enc[1].state.name in ("COMPLETE", "PRUNED")
    # the worst-N stage ran: a complete encoder trial reported 1 + 1 fine-tuning epochs
    assert len(enc[0].intermediate_values) == 2


def test_quick_plan_overrides_the_study_files_and_stays_inside_its_root(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    plan = campaign.quick_plan(tmp_path)
    assert plan.studies == campaign.STUDIES and not (tmp_path / "studies").exists()  # no copies of the study files
    steps = {st.name: st.argv for st in campaign.steps(plan)}
    paths = [a.split("=", 1)[-1] for argv in steps.values() for a in argv if a != sys.executable]
    paths = [p for p in paths if p.startswith("/") and p not in {str(f) for f in STUDIES.values()}]  # studies: read only
    assert paths and all(p.startswith(str(tmp_path)) for p in paths), [p for p in paths if not p.startswith(str(tmp_path))]
    for stage in ("decoder", "encoder"):  # the overrides validate and write under the root
        cfg = load_study_config(STUDIES[stage], overrides=plan.study_sets[stage], check_trainable=False)
        assert cfg.output_dir == tmp_path / "outputs" and cfg.raw["config"]["data"]["path"] == str(tmp_path / "data" / "train.h5")
        assert campaign.study_dir(plan, stage) == tmp_path / "outputs" / f"fspnet_{stage}"
        sets = [a for item in plan.study_sets[stage] for a in ("--set", item)]
        for step in (f"{stage}-study", f"{stage}-report", f"{stage}-best"):
            assert steps[step][-len(sets) :] == sets, step
    assert plan.install_dir == tmp_path / "pretrained" and plan.docs_dir == tmp_path / "docs"
    assert steps["install"][steps["install"].index("--install") :] == [
        "--install",
        str(tmp_path / "pretrained"),
        "--install-seed",
        "0",
        "--ensemble",
        "--evaluation",
        str(tmp_path / "evaluation" / "ensemble" / "summary.json"),
    ]
    # hpo.launch takes the quick study command as it is: its overrides reach every worker
    from hpo.launch import main as launch_main

    script = tmp_path / "w.sbatch"
    assert launch_main([*steps["decoder-study"][3:], "--sbatch-script", str(script)]) == 0
    assert shlex.join(["--set", f"output_dir={tmp_path / 'outputs'}", "--set", "n_trials=1"]) in script.read_text()


def test_tables_go_between_the_markers_and_say_what_has_not_run(tmp_path):
    tables = _load("campaign_tables", REPO / "scripts" / "campaign_tables.py")
    doc = tmp_path / "page.md"
    doc.write_text(f"# page\n\nbefore\n{tables.BEGIN}\nold\n{tables.END}\nafter\n")
    evals = tmp_path / "evaluation"
    (evals / "decoder-found" / "seed-0").mkdir(parents=True)
    (evals / "decoder-found" / "seed-0" / "summary.json").write_text(
        '{"decoder": {"mse_transformed": 2e-5, "mse_physical": 1.0, "us_per_spectrum": 9.0, "n_weights": 10, "noise_floor": 1.5e-5}}'
    )
    (evals / "decoder-default" / "seed-0").mkdir(parents=True)
    (evals / "decoder-default" / "seed-0" / "summary.json").write_text(
        '{"decoder": {"mse_transformed": 4e-5, "mse_physical": 2.0, "us_per_spectrum": 30.0, "n_weights": 20, "noise_floor": 1.5e-5}}'
    )
    block = tables.render(
        studies={"s": tmp_path / "no-study.db"},
        finals={"found decoder": tmp_path / "no-study.train_best.json"},
        pruning=tmp_path / "no-pruning.md",
        found_decoders={"found decoder": (tmp_path / "no-study.train_best.json", "found")},
        evals=evals,
        encoders={"found": evals / "found"},
    )
    tables.update_doc(doc, block)
    text = doc.read_text()
    assert text.startswith("# page\n\nbefore\n") and text.endswith(f"{tables.END}\nafter\n") and "old" not in text
    assert "not run (" in text and "Not run yet" in text and "Not yet evaluated" in text
    assert "| MSE below the default's | 50.0 % |  | ≥ 20 % |" in text  # 1 - 2e-5 / 4e-5
    assert "| MSE above the floor below the default's | 80.0 % |  |  |" in text  # 1 - 0.5e-5 / 2.5e-5
    bare = tmp_path / "bare.md"
    bare.write_text("no markers")
    with pytest.raises(SystemExit, match="no <!-- campaign-results:begin -->"):
        tables.update_doc(bare, block)


def test_record_copies_what_the_tables_read_into_the_docs_folder(tmp_path, monkeypatch):
    import optuna

    monkeypatch.delenv("HPO_STORAGE", raising=False)
    plan = campaign.quick_plan(tmp_path)
    folder = campaign.study_dir(plan, "decoder")
    (folder / "best").mkdir(parents=True)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    study.set_user_attr("metrics", ["val_loss"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    (folder / "best" / "summary.json").write_text('{"runs": [{"seed": 0, "value": 0.5, "metrics": {}}]}')
    summary = plan.root / "evaluation" / "decoder-found" / "seed-0" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text('{"decoder": {"mse_transformed": 2e-5}}')
    written = campaign.record(plan)
    docs = plan.docs_dir
    assert sorted(p.relative_to(docs).as_posix() for p in written) == [
        "evaluation/decoder-found/seed-0/summary.json", "fspnet_decoder.db", "fspnet_decoder.train_best.json",
    ]  # fmt: skip
    copy = optuna.load_study(study_name="s", storage=f"sqlite:///{docs / 'fspnet_decoder.db'}")
    assert [t.params for t in copy.trials] == [t.params for t in study.trials]
    tables = _load("campaign_tables", REPO / "scripts" / "campaign_tables.py")
    rows = tables.study_rows({"decoder": docs / "fspnet_decoder.db"})
    best = min(study.trials, key=lambda t: t.value)
    assert "| decoder | 3 (3 / 0 / 0) | 0 |" in rows and f"val_loss | {best.number} | x {best.params['x']:.3g} |" in rows


def test_final_rows_name_each_studys_metric(tmp_path):
    tables = _load("campaign_tables", REPO / "scripts" / "campaign_tables.py")
    summary = tmp_path / "enc.train_best.json"
    summary.write_text('{"metric": "val_latent_loss", "runs": [{"seed": 0, "value": 0.5}, {"seed": 1, "value": 0.7}]}')
    rows = tables.final_rows({"found encoder": summary, "found decoder": tmp_path / "missing.json"})
    assert "| network | metric | mean ± std | seeds | per seed |" in rows
    assert "| found encoder | val_latent_loss | 0.6 ± 0.1414 | 0, 1 | 0.5, 0.7 |" in rows
    assert "| found decoder | not run (" in rows


def test_steps_run_in_the_root_with_paths_relative_to_it(tmp_path):
    """What the commands record (evaluation summaries, origin.json) names no checkout folder."""
    plan = campaign.Plan(root=tmp_path / "campaign", data_dir=tmp_path / "data")
    out = tmp_path / "argv.txt"
    script = "import pathlib, sys; pathlib.Path(sys.argv[2]).write_text(sys.argv[1])"
    step = campaign.Step("echo", [campaign.PY, "-c", script, str(REPO / "studies" / "x.yaml"), str(out)])
    campaign.run(plan, [step], log=io.StringIO())
    assert out.read_text() == "studies/x.yaml"  # outside the root (tmp_path): as given
    assert (plan.root / "done" / "echo").is_file()
