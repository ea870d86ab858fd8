"""python -m fspnet.convert: an FSP-Net config.yaml becomes trainer, generator and study configs.

``tests/data/fspnet_config/config.yaml`` was written for these tests in the schema of FSP-Net's
``config.yaml`` (its four sections, its anchors under ``global-variables``, its key names).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fspnet import convert as conv
from fspnet.config import load_config
from fspnet.errors import ConfigError
from fspnet.synthesize import load_synthesize_config

DATA = Path(__file__).parents[1] / "data"
CONFIG = DATA / "fspnet_config" / "config.yaml"

# every key of the test file that has no counterpart here
UNMAPPED = {
    "spectrum-fit.training.tests",
    "spectrum-fit.training.decoder-save",
    "spectrum-fit.training.encoder-save",
    "spectrum-fit.training.decoder-load",
    "spectrum-fit.training.encoder-load",
    "spectrum-fit.training.cpus",
    "spectrum-fit.data.spectra-directory",
    "spectrum-fit.model.iterations",
    "spectrum-fit.model.model-name",
    "spectrum-fit.model.custom-model-name",
    "spectrum-fit.model.model-directory",
    "spectrum-fit.model.fixed-parameters",
    "spectrum-fit.model.default-parameters",
    "spectrum-fit.model.parameter-names",
    "spectrum-fit.output.parameter-predictions-path",
    "spectrum-fit.output.plots-directory",
    "spectrum-fit.output.worker-directory",
    "data-preprocessing.preprocessing.cpus",
    "data-preprocessing.data.names-path",
    "synthesize-spectra.synthesize.clear-spectra",
    "synthesize-spectra.synthesize.flat-distribution-bias",
    "synthesize-spectra.synthesize.spectra-per-batch",
    "synthesize-spectra.synthesize.spectra-per-background",
    "synthesize-spectra.data.spectra-directory",
    "synthesize-spectra.data.names-path",
    "synthesize-spectra.output.worker-directory",
    "network-optimizer.optimization.load",
    "network-optimizer.optimization.save",
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    assert conv.main([str(CONFIG), "--out", str(out)]) == 0
    return out


def test_writes_valid_trainer_configs(converted):
    decoder = load_config(converted / "fspnet_decoder.yaml")
    encoder = load_config(converted / "fspnet_encoder.yaml")
    assert decoder["stage"] == "decoder" and encoder["stage"] == "encoder"
    for cfg in (decoder, encoder):
        assert cfg["training"]["epochs"] == 40
        assert cfg["training"]["batch_size"] == 120
        assert cfg["training"]["learning_rate"] == pytest.approx(1e-3)
        assert cfg["data"]["log_params"] == [0, 2, 3, 4]
    # pickled datasets become HDF5 paths; FSP-Net's relative paths are resolved
    assert decoder["data"]["path"] == str(DATA / "data" / "synthetic.h5")
    assert encoder["data"]["path"] == str(DATA / "data" / "spectra.h5")
    assert decoder["decoder"]["network"] == str(DATA / "fspnet_nets" / "fspnet_v1" / "decoder_dense_gru.json")
    assert Path(encoder["encoder"]["network"]).is_file()
    assert encoder["encoder"]["decoder_run"] == decoder["run_dir"] == str(DATA / "states" / "decoder")


def test_writes_a_valid_generator_config(converted):
    cfg = load_synthesize_config(converted / "synthesize.yaml")
    assert cfg.model.backend == "native"
    params = cfg.sampling.params
    assert list(params) == ["nh", "gamma", "fsc", "kt_max", "norm"]
    assert (params["nh"].low, params["nh"].high, params["nh"].log) == (0.01, 50.0, True)
    assert params["gamma"].log is False
    assert cfg.workers == 2


def test_writes_a_valid_study(converted):
    study = pytest.importorskip("hpo.study")
    cfg = study.load_study_config(converted / "study.yaml")
    assert cfg.trainable == "fspnet" and cfg.max_trials == 12
    assert cfg.pruner == {"name": "MedianPruner", "configs": {"n_startup_trials": 3}}
    assert cfg.base_config["training"]["epochs"] == 10
    assert cfg.base_config["decoder"]["network"].endswith("decoder_dense_gru.json")


def test_every_unmapped_key_is_named_and_no_key_is_lost():
    result = conv.convert(CONFIG, "out")
    named = {line.split(":")[0] for line in result.unmapped}
    assert named == UNMAPPED
    assert all(line.split(": ", 1)[1] for line in result.unmapped)  # each with its reason
    leaves = {
        leaf for leaf in conv._Reader(yaml.safe_load(CONFIG.read_text())).leaves() if not leaf.startswith("global-variables")
    }
    assert not named & set(result.mapped)
    assert leaves == named | set(result.mapped)
    assert "synthesize-spectra.model.parameter-limits" in result.mapped


def test_dry_run_prints_everything_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert conv.main([str(CONFIG), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    for name in ("fspnet_decoder.yaml", "fspnet_encoder.yaml", "synthesize.yaml", "study.yaml", "conversion.txt"):
        assert f"--- {out / name}" in text
    assert "spectrum-fit.training.decoder-save: numbered state files are gone" in text
    assert "decoder.network: " in text and "builds [5] -> [240] with 152,454 weights" in text
    assert not out.exists()


def test_older_multi_document_files(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "---\ntraining:\n  epochs: 7\n  decoder-name: decoder_upscale\n"
        "  network-configs-directory: "
        + str(DATA / "fspnet_nets" / "fspnet_v1")
        + "\ndata:\n  decoder-data-path: synth.npy\n---\noutput:\n  processed-path: p.npy\n"
    )
    result = conv.convert(path, tmp_path / "out")
    assert result.files["fspnet_decoder.yaml"]["training"] == {"epochs": 7}
    assert result.files["fspnet_decoder.yaml"]["data"]["path"] == str(tmp_path / "synth.h5")
    assert any("decoder_upscale.json builds [5] -> [240] with 391 weights" in n for n in result.notes)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "name: x\n",
            r"config\.yaml: not an FSP-Net config\.yaml: expected the sections "
            r"spectrum-fit, data-preprocessing",
        ),
        (
            "synthesize-spectra:\n  model:\n    model-name: tbabs(simplcutx(ezdiskbb))\n    fixed-parameters: {4: 0.5, 5: 100}\n",
            r"synthesize-spectra\.model\.fixed-parameters: the native model fixes",
        ),
        (
            "synthesize-spectra:\n  model:\n    model-name: tbabs(simplcutx(ezdiskbb))\n"
            "    parameter-limits: [{low: 1, high: 2}]\n",
            r"synthesize-spectra\.model\.parameter-limits: 1 ranges, but the model has 5 free",
        ),
        (
            "spectrum-fit:\n  training:\n    epochs: -3\n",
            r"(?s)the converted trainer config is invalid: .*training\.epochs: must be > 0",
        ),
    ],
)
def test_errors_name_the_key(tmp_path, text, match):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        conv.convert(path, tmp_path / "out")


def test_only_the_sections_present_are_converted(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("synthesize-spectra:\n  synthesize:\n    synthetic-number: 10\n")
    result = conv.convert(path, tmp_path / "out")
    assert list(result.files) == ["synthesize.yaml"]
    assert any("--n 10" in note for note in result.notes)


def test_an_xspec_model_gets_xspec_parameter_names(tmp_path):
    from fspnet.physics._xspec import xspec_available

    if not xspec_available():
        pytest.skip("XSPEC's model library (xspectrampoline, a dev dependency) is not installed")
    path = tmp_path / "config.yaml"
    path.write_text(
        "synthesize-spectra:\n  model:\n    model-name: tbabs(diskbb+powerlaw)\n"
        "    custom-model-name: mymodel\n    fixed-parameters: {2: 1.5}\n"
        "    log-parameters: [0, 3]\n    parameter-limits: [{low: 0.1, high: 2}, "
        "{low: 0.1, high: 10}, {low: 1, high: 3}, {low: 0.01, high: 10}]\n"
    )
    result = conv.convert(path, tmp_path / "out")
    model = result.files["synthesize.yaml"]["model"]
    assert model == {"backend": "xspec", "expression": "tbabs(diskbb+powerlaw)", "fixed": {"diskbb.Tin": 1.5}}
    params = result.files["synthesize.yaml"]["sampling"]["params"]
    assert list(params) == ["tbabs.nH", "diskbb.norm", "powerlaw.PhoIndex", "powerlaw.norm"]
    assert params["tbabs.nH"]["log"] and params["powerlaw.norm"]["log"]
    assert not params["diskbb.norm"]["log"]
    assert [
        "synthesize-spectra.model.custom-model-name: local XSPEC models are not loaded, "
        "only XSPEC's own (the native model has simplcutx built in)"
    ] == result.unmapped


def test_cli_reports_errors(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("name: x\n")
    assert conv.main([str(path), "--out", str(tmp_path / "o")]) == 2
    assert "error: " in capsys.readouterr().err
