"""``hpo.train_best``: the best trial retrained with several seeds, and installed as pre-trained networks.

Two real, tiny FSP-Net studies (a decoder, then an encoder trained through the decoder
study's final training) run end to end; the installer writes into a temporary folder, never
into the shipped ``fspnet/pretrained/``.
"""

from __future__ import annotations

import csv
import json
import statistics
import typing as tp
from pathlib import Path

import pytest
import yaml

from fspnet.data import write_dataset
from fspnet.pretrained import ENV_DIR, ORIGIN, PRETRAINED_DIR, install, load_pretrained
from hpo.errors import HpoError
from tests.fspnet_tests.conftest import make_dataset

ROOT = Path(__file__).resolve().parents[2]


def _study(tmp: Path, name: str, config: dict, tune: dict, metric: str = "val_loss") -> Path:
    data = {
        "name": name, "output_dir": str(tmp / "outputs"), "direction": "minimize", "metric": metric, "seed": 0,
        "n_trials": 2, "sampler": {"name": "RandomSampler", "configs": {"seed": 0}}, "pruner": {"name": "NopPruner"},
        "trainable": "fspnet", "config_file": str(ROOT / "configs" / "fspnet.yaml"), "config": config,
        "tune_params": tune, "collate_results": False, "train_best": {"seeds": 2, "config": {"training": {"epochs": 3}}},
    }  # fmt: skip
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tp.Any]:
    """Decoder study → its final training (2 seeds) → encoder study through seed 0 → its final training."""
    import optuna

    from hpo.run import run_study
    from hpo.study import load_study_config
    from hpo.train_best import train_best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = tmp_path_factory.mktemp("train_best")
    data = tmp / "spectra.h5"
    write_dataset(data, make_dataset(160, seed=5))
    heldout = tmp / "heldout.h5"
    write_dataset(heldout, make_dataset(12, seed=6))
    training = {"epochs": 2, "patience": None, "batch_size": 40, "device": "cpu", "plots": False}
    lr = {"state": True, "suggest": "float", "kwargs": {"low": 1e-3, "high": 3e-3, "log": True}, "path": "training.learning_rate"}
    dec_path = _study(
        tmp,
        "tiny_decoder",
        {
            "stage": "decoder",
            "data": {"path": str(data), "val_fraction": 0.25},
            "training": training,
            "decoder": {"architecture": {"gru": False, "residual_layers": 0}},
        },
        {
            "learning_rate": lr,
            "width": {"state": True, "suggest": "cat", "kwargs": {"choices": [16, 24]}, "path": "decoder.architecture.width"},
        },
    )
    run_study(dec_path, progress=False)
    dec_cfg = load_study_config(dec_path)
    dec_summary = train_best(dec_cfg, render=False)
    enc_path = _study(
        tmp,
        "tiny_encoder",
        {
            "stage": "encoder",
            "data": {"path": str(data), "val_fraction": 0.25},
            "training": training,
            "encoder": {
                "decoder_run": dec_summary["runs"][0]["run_dir"],
                "architecture": {"filters": [4, 4], "dense_width": 16, "dense_layers": 1},
            },
        },
        {
            "learning_rate": lr,
            "latent_weight": {
                "state": True,
                "suggest": "float",
                "kwargs": {"low": 0.01, "high": 0.1},
                "path": "encoder.latent_weight",
            },
        },
        metric="val_latent_loss",  # val_loss is scaled by the tuned latent_weight: refused
    )
    run_study(enc_path, progress=False)
    enc_cfg = load_study_config(enc_path)
    enc_summary = train_best(enc_cfg, render=False)
    return {"tmp": tmp, "heldout": heldout, "dec_cfg": dec_cfg, "dec": dec_summary, "enc_cfg": enc_cfg, "enc": enc_summary}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def test_train_best_reports_mean_and_std_over_seeds(studies):
    s = studies["enc"]
    assert [r["seed"] for r in s["runs"]] == [0, 1]
    values = [r["value"] for r in s["runs"]]
    assert values[0] != values[1]  # two seeds, two trainings
    assert s["mean"] == pytest.approx(statistics.fmean(values)) and s["std"] == pytest.approx(statistics.stdev(values))
    saved = json.loads((studies["enc_cfg"].study_dir / "best" / "summary.json").read_text())
    assert saved["mean"] == s["mean"] and saved["trial"] == s["trial"]
    # the final training is the best trial's config with the study's train_best overrides
    assert s["config"]["training"]["epochs"] == 3
    assert s["config"]["encoder"]["latent_weight"] == s["params"]["latent_weight"]
    assert all(len(json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["history"]) == 3 for r in s["runs"])


def test_install_best_writes_origin_and_predict_pretrained_uses_it(studies, monkeypatch, capsys):
    from fspnet.predict import main as predict_main
    from hpo.train_best import main as train_best_main

    shipped = _snapshot(PRETRAINED_DIR)
    target = studies["tmp"] / "pretrained"
    target.mkdir()
    (target / "__init__.py").write_text("# the package module: never touched\n")
    (target / "evaluation.json").write_text("{}")  # figures of an earlier install: removed
    # repeating the command resumes the finished runs at once, then installs the best seed
    assert train_best_main(["--study", str(studies["enc_cfg"].path), "--install", str(target), "--log-level", "WARNING"]) == 0
    assert f"installed into {target}" in capsys.readouterr().out
    s = studies["enc"]
    chosen = min(s["runs"], key=lambda r: r["value"])
    origin = json.loads((target / ORIGIN).read_text())
    assert origin["made_by"] == "python -m hpo.train_best --install"
    assert (origin["study"], origin["trial"], origin["params"], origin["seed"]) == (
        "tiny_encoder",
        s["trial"],
        s["params"],
        chosen["seed"],
    )
    assert origin["study_file"] == str(studies["enc_cfg"].path) and origin["mean"] == s["mean"]
    assert origin["run_dir"] == chosen["run_dir"]
    assert set(origin["installed_at_commit"]) == {"commit", "dirty"} and set(origin["trained_at_commit"]) == {"commit", "dirty"}
    dec = studies["dec"]
    assert (origin["decoder"]["study"], origin["decoder"]["trial"], origin["decoder"]["params"], origin["decoder"]["seed"]) == (
        "tiny_decoder",
        dec["trial"],
        dec["params"],
        0,
    )
    assert (target / "__init__.py").read_text().startswith("# the package module")
    assert not (target / "evaluation.json").exists()
    assert "tiny_encoder" in (target / "README.md").read_text()
    assert json.loads((target / "decoder_config.json").read_text())["run_dir"] == dec["runs"][0]["run_dir"]
    # --pretrained now reads the installed folder and predicts exactly what the run directory does
    run = load_pretrained(path=target)
    assert run.stage == "encoder" and run.decoder is not None
    monkeypatch.setenv(ENV_DIR, str(target))
    out_pre, out_run = studies["tmp"] / "pre.csv", studies["tmp"] / "run.csv"
    assert predict_main(["--pretrained", "--data", str(studies["heldout"]), "--out", str(out_pre), "--log-level", "WARNING"]) == 0
    assert (
        predict_main(
            ["--run", chosen["run_dir"], "--data", str(studies["heldout"]), "--out", str(out_run), "--log-level", "WARNING"]
        )
        == 0
    )
    rows = list(csv.reader(out_pre.open()))
    assert len(rows) == 13 and rows == list(csv.reader(out_run.open()))
    assert _snapshot(PRETRAINED_DIR) == shipped  # the shipped networks were not touched


def test_install_refuses_a_decoder_study(studies):
    from hpo.train_best import install_best

    with pytest.raises(
        HpoError, match=r"tiny_decoder\.yaml: --install needs an fspnet encoder study .* trains 'fspnet' stage 'decoder'"
    ):
        install_best(studies["dec_cfg"], studies["dec"], studies["tmp"] / "never")
    assert not (studies["tmp"] / "never").exists()


def test_installer_refuses_a_decoder_run(studies):
    from fspnet.errors import DataError

    run_dir = studies["dec"]["runs"][0]["run_dir"]
    with pytest.raises(DataError, match=r"a decoder run; pre-trained networks are an encoder run with its frozen decoder"):
        install(run_dir, studies["tmp"] / "never", origin={})


def test_installer_needs_the_decoder_run(studies, tmp_path):
    from fspnet.errors import DataError

    run_dir = studies["enc"]["runs"][0]["run_dir"]
    with pytest.raises(DataError, match=r"nowhere: the decoder run of .* lacks metrics\.json, config\.json; pass decoder_run="):
        install(run_dir, tmp_path / "target", origin={}, decoder_run=tmp_path / "nowhere")
    assert not (tmp_path / "target").exists()  # nothing half-installed


def test_install_names_the_commit_the_training_started_at(studies, tmp_path):
    """A resumed run's provenance.json keeps its earlier records under ``previous``; installing
    (which resumes the finished runs first) must not pass the resume off as the training."""
    import shutil

    src = tmp_path / "run"
    shutil.copytree(studies["enc"]["runs"][0]["run_dir"], src)
    prov = json.loads((src / "provenance.json").read_text())
    first = {**prov, "git": {"commit": "0" * 40, "dirty": False}}
    prov = {**prov, "git": {"commit": "1" * 40, "dirty": True}, "previous": [first]}
    (src / "provenance.json").write_text(json.dumps(prov))
    install(src, tmp_path / "target", origin={})
    origin = json.loads((tmp_path / "target" / ORIGIN).read_text())
    assert origin["trained_at_commit"] == {"commit": "0" * 40, "dirty": False}


def test_install_refuses_when_no_seed_has_a_finite_value(studies):
    from hpo.train_best import install_best

    broken = {**studies["enc"], "runs": [{**r, "value": float("nan")} for r in studies["enc"]["runs"]]}
    with pytest.raises(HpoError, match=r"best/summary\.json: no seed has a finite val_latent_loss; nothing to install"):
        install_best(studies["enc_cfg"], broken, studies["tmp"] / "never")


def test_install_a_chosen_seed_with_its_evaluation(studies, tmp_path, capsys):
    """The campaign installs the seed it evaluated, with that evaluation beside it (one installer, origin.json)."""
    from hpo.train_best import main as train_best_main

    s = studies["enc"]
    other = max(s["runs"], key=lambda r: r["value"])  # not the seed --install picks by itself
    evaluation = tmp_path / "summary.json"
    evaluation.write_text(json.dumps({"run": other["run_dir"], "n_spectra": 12, "recovery": {"methods": {}}}))
    target = tmp_path / "pretrained"
    argv = ["--study", str(studies["enc_cfg"].path), "--log-level", "WARNING", "--install", str(target)]
    assert train_best_main([*argv, "--install-seed", str(other["seed"]), "--evaluation", str(evaluation)]) == 0
    origin = json.loads((target / ORIGIN).read_text())
    assert origin["seed"] == other["seed"] and origin["run_dir"] == other["run_dir"] and origin["value"] == other["value"]
    assert json.loads((target / "evaluation.json").read_text()) == json.loads(evaluation.read_text())
    capsys.readouterr()
    assert train_best_main([*argv, "--install-seed", "7"]) == 2
    assert "best/summary.json: the final training has no seed 7; seeds [0, 1]" in capsys.readouterr().err
    assert train_best_main([*argv, "--evaluation", str(tmp_path / "nope.json")]) == 2
    assert f"--evaluation {tmp_path / 'nope.json'}: cannot read the evaluation summary" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_best_main(["--study", str(studies["enc_cfg"].path), "--install-seed", "0"])
    assert "--install-seed, --evaluation and --ensemble need --install DIR" in capsys.readouterr().err


def test_install_the_seeds_as_an_ensemble_that_predicts_their_mean(studies, tmp_path, monkeypatch):
    """``--ensemble``: every seed installed as one network whose output is the mean of theirs;
    installing one seed again afterwards leaves no member of the ensemble behind."""
    import torch

    from fspnet.nets import Ensemble, Network
    from fspnet.rundir import load_run
    from hpo.train_best import main as train_best_main

    s = studies["enc"]
    target = tmp_path / "pretrained"
    argv = ["--study", str(studies["enc_cfg"].path), "--log-level", "WARNING", "--install", str(target)]
    monkeypatch.chdir(studies["enc_cfg"].path.parent)
    assert train_best_main([*argv, "--install-seed", "1", "--ensemble"]) == 0
    origin = json.loads((target / ORIGIN).read_text())
    assert origin["study_file"] == "tiny_encoder.yaml"  # inside the working directory: relative to it
    runs = {r["seed"]: r["run_dir"] for r in s["runs"]}
    assert origin["seed"] == 1 and origin["ensemble_seeds"] == [1, 0]
    assert origin["ensemble_members"] == [runs[1], runs[0]]
    members = json.loads((target / "ensemble.json").read_text())["members"]
    assert [m["weights"] for m in members] == ["best.safetensors", "member-1.safetensors"]
    assert [m["run_dir"] for m in members] == [runs[1], runs[0]]
    assert "An ensemble of 2 trainings" in (target / "README.md").read_text()
    ensemble = load_pretrained(path=target)
    assert isinstance(ensemble.network, Ensemble) and len(ensemble.network.members) == 2
    one, other = load_run(runs[1]), load_run(runs[0])
    x = torch.randn(5, *one.input_shape)
    with torch.no_grad():
        mean = (one.network(x) + other.network(x)) / 2
        assert torch.allclose(ensemble.network(x), mean, atol=1e-6)
        assert not torch.allclose(one.network(x), other.network(x))  # two different seeds
    assert train_best_main(argv) == 0  # the best seed alone
    assert not (target / "ensemble.json").exists() and not (target / "member-1.safetensors").exists()
    assert isinstance(load_pretrained(path=target).network, Network)


def test_an_ensemble_holds_only_trainings_of_one_network_and_its_own_files(studies, tmp_path):
    import shutil

    from fspnet.errors import DataError
    from fspnet.rundir import load_run, write_ensemble

    enc, dec = (r["run_dir"] for r in studies["enc"]["runs"]), studies["dec"]["runs"][0]["run_dir"]
    first, second = enc
    target = tmp_path / "ens"
    shutil.copytree(first, target)
    with pytest.raises(
        DataError,
        match=r"cannot join the ensemble of .*: its stage, network file, shapes, frozen decoder differ",
    ):
        write_ensemble(target, first, [dec])
    assert sorted(write_ensemble(target, first, [second])) == ["ensemble.json", "member-1.safetensors"]
    assert len(load_run(target).network.members) == 2
    with pytest.raises(DataError, match=r"already an ensemble; list its member runs instead"):
        write_ensemble(tmp_path / "other", target, [second])
    # a member's weights swapped for another run's are refused, naming the file
    shutil.copyfile(Path(first) / "best.safetensors", target / "member-1.safetensors")
    with pytest.raises(DataError, match=r"member-1\.safetensors: not the weights of run .* that .*ensemble\.json lists"):
        load_run(target)
    (target / "ensemble.json").write_text(json.dumps({"members": [{"weights": "../best.safetensors"}]}))
    with pytest.raises(DataError, match=r"ensemble\.json: the first of two or more members must be this run's best\.safetensors"):
        load_run(target)


def test_one_seed_at_a_time_then_a_summary_that_resumes_them(studies, capsys):
    from hpo.train_best import main

    cfg = studies["dec_cfg"]
    best = cfg.study_dir / "best"
    before = {d.name: _snapshot(d) for d in best.iterdir() if d.is_dir()}
    summary = best / "summary.json"
    summary.unlink()
    # seed index 1 alone: its run resumes (finished: nothing retrained), no summary is written
    assert main(["--study", str(cfg.path), "--seeds", "2", "--seed-index", "1"]) == 0
    assert "seed 1 of trial" in capsys.readouterr().out and not summary.exists()
    assert _snapshot(best / "seed-1")["best.safetensors"] == before["seed-1"]["best.safetensors"]
    # the run without it writes the summary of both
    assert main(["--study", str(cfg.path), "--seeds", "2"]) == 0
    assert [r["seed"] for r in json.loads(summary.read_text())["runs"]] == [0, 1]
    assert main(["--study", str(cfg.path), "--seeds", "2", "--seed-index", "2"]) == 2
    assert "seed index 2 is not one of the 2 seeds (0 to 1)" in capsys.readouterr().err
