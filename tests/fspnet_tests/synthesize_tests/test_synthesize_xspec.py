"""fspnet.synthesize with ``model.backend: xspec``: any XSPEC expression through the same generator."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("xspectrampoline")

from fspnet.data import read_dataset
from fspnet.errors import ConfigError
from fspnet.physics._xspec import xspec_model
from fspnet.synthesize import Synthesizer, dataset_model, load_synthesize_config, synthesize, validate_config

pytestmark = pytest.mark.xspec

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "synthesize_xspec.yaml"
SMALL = {"chunk_size": 64, "min_counts": 1000.0, "workers": 1}


def test_the_shipped_config_is_valid_and_names_the_expression():
    cfg = load_synthesize_config(CONFIG)
    assert cfg.model.backend == "xspec" and cfg.model.expression == "tbabs*(diskbb+powerlaw)"
    gen = Synthesizer(cfg)
    assert gen.param_names == ["tbabs.nH", "diskbb.Tin", "diskbb.norm", "powerlaw.PhoIndex", "powerlaw.norm"]
    assert gen.log_params == [0, 1, 2, 4]


def test_clean_spectra_are_xspec_folded_through_the_response():
    cfg = load_synthesize_config(CONFIG, {"noise": "none", "min_counts": 0.0, "fold_dtype": "float64"})
    gen = Synthesizer(cfg)
    params = np.array([[0.3, 0.6, 400.0, 2.1, 0.5], [2.0, 1.5, 30.0, 1.6, 0.05]])
    spectra, _, _ = gen.simulate(params, np.full(2, 1000.0), np.random.default_rng(0))
    edges = gen.edges.numpy()
    for row, s in zip(params, spectra):
        nh, tin, dnorm, gamma, pnorm = row
        flux = xspec_model("tbabs", edges, [nh]) * (
            dnorm * xspec_model("diskbb", edges, [tin]) + pnorm * xspec_model("powerlaw", edges, [gamma])
        )
        rate = gen.folder.counts_rate(torch.from_numpy(flux)[None])[0].numpy()
        np.testing.assert_allclose(s, rate / (gen.folder.detectors * gen.folder.energy_widths), rtol=1e-10)


def test_dataset_records_expression_backend_and_parameters(tmp_path):
    out = tmp_path / "xspec.h5"
    cfg = load_synthesize_config(CONFIG, {**SMALL, "sampling": {"params": {
        "diskbb.Tin": {"low": 0.3, "high": 2.0, "log": True}, "diskbb.norm": {"low": 100.0, "high": 1e4, "log": True},
        "powerlaw.norm": {"low": 0.1, "high": 3.0, "log": True}}}, "model": {"backend": "xspec", "expression": "tbabs*(diskbb+powerlaw)", "fixed": {"tbabs.nH": 0.4}}})  # fmt: skip
    ds = synthesize(cfg, n=24, out=out, progress=False)
    assert ds.param_names == ["diskbb.Tin", "diskbb.norm", "powerlaw.norm"] and ds.params.shape == (24, 3)
    assert 0.3 <= ds.params[:, 0].min() and ds.params[:, 0].max() <= 2.0
    with h5py.File(out) as f:
        assert f.attrs["model_expression"] == "tbabs*(diskbb+powerlaw)" and f.attrs["model_backend"] == "xspec"
    back = read_dataset(out)
    assert back.source["model"]["frozen"] == {"tbabs.nH": 0.4, "powerlaw.PhoIndex": 1.0}
    model = dataset_model(back.source, back.param_names)
    assert model.param_names == ("diskbb.Tin", "diskbb.norm", "powerlaw.norm")
    with pytest.raises(ConfigError, match=r"the dataset's parameters \['nh'\] are not those of its model"):
        dataset_model(back.source, ["nh"])


@pytest.mark.slow
def test_same_seed_gives_the_same_data_for_any_number_of_workers():
    cfg = load_synthesize_config(CONFIG, {**SMALL, "seed": 5})
    one = Synthesizer(cfg).run(40, progress=False, workers=1)
    two = Synthesizer(cfg).run(40, progress=False, workers=2)
    np.testing.assert_array_equal(one.spectra, two.spectra)
    np.testing.assert_array_equal(one.params, two.params)


def test_config_errors_name_the_key_and_the_valid_choices():
    with pytest.raises(ConfigError) as err:
        validate_config({"model": {"backend": "xspec", "expression": "tbabs*(diskbb+powerlaw)"},
                         "sampling": {"params": {"powerlaw.Gamma": {"low": 1, "high": 3}, "diskbb.Tin": {"low": 0.1, "high": 2}}}}, "my.yaml")  # fmt: skip
    assert ("my.yaml: sampling.params.powerlaw.Gamma: unknown parameter 'powerlaw.Gamma'; valid parameters of "
            "'tbabs*(diskbb+powerlaw)' are tbabs.nH, diskbb.Tin, diskbb.norm, powerlaw.PhoIndex, powerlaw.norm") in str(err.value)  # fmt: skip
    with pytest.raises(
        ConfigError,
        match=r"my.yaml: model.expression 'tbabs\*diskbbb': at position 6: unknown component 'diskbbb' \(similar: diskbb, ",
    ):
        validate_config(
            {"model": {"backend": "xspec", "expression": "tbabs*diskbbb"}, "sampling": {"params": {"tbabs.nH": {}}}}, "my.yaml"
        )
    with pytest.raises(ConfigError, match=r"model.expression: the xspec backend needs an XSPEC model expression"):
        validate_config({"model": {"backend": "xspec"}})
    with pytest.raises(
        ConfigError,
        match=r"model.expression: the native backend computes only tbabs\*simplcutx\(ezdiskbb\), but got 'tbabs\*powerlaw'; set model.backend: xspec",
    ):
        validate_config({"model": {"expression": "tbabs*powerlaw"}})
    assert validate_config({"workers": 0}).workers == 0  # one process per core
    with pytest.raises(ConfigError, match=r"workers: must be >= 1 \(or 0: one per core\), but got -1"):
        validate_config({"workers": -1})
    with pytest.raises(ConfigError, match=r"model.backend: unknown 'xpsec'; choose one of native, xspec"):
        validate_config({"model": {"backend": "xpsec"}})
    with pytest.raises(
        ConfigError, match=r"sampling.params.powerlaw.norm: needs low < high \(and low > 0 when log\), but got \[0.0, 1e\+24\]"
    ):
        validate_config(
            {"model": {"backend": "xspec", "expression": "powerlaw"}, "sampling": {"params": {"powerlaw.norm": {"log": True}}}}
        )


def test_nested_and_dotted_override_keys_mean_the_same_parameters():
    from fspnet.config import set_path

    # hpo and --set overrides split dotted paths into nested mappings; YAML users may nest too.
    raw: dict = {"model": {"backend": "xspec", "expression": "tbabs*(powerlaw+powerlaw)"}}
    set_path(raw, "sampling.params.powerlaw.PhoIndex.low", 1.5)
    set_path(raw, "sampling.params.powerlaw.PhoIndex.high", 2.5)
    set_path(raw, "sampling.params.powerlaw.norm", {"low": 0.1, "high": 1.0, "log": True})
    set_path(raw, "model.ties.powerlaw_2.PhoIndex", "powerlaw.PhoIndex")
    set_path(raw, "model.fixed.tbabs.nH", 0.2)
    cfg = validate_config(raw)
    assert list(cfg.sampling.params) == ["powerlaw.PhoIndex", "powerlaw.norm"]
    assert cfg.model.ties == {"powerlaw_2.PhoIndex": "powerlaw.PhoIndex"} and cfg.model.fixed == {"tbabs.nH": 0.2}
    assert Synthesizer(cfg).param_names == ["powerlaw.PhoIndex", "powerlaw.norm"]
    # a misspelt range key is still named as such
    with pytest.raises(ConfigError, match=r"sampling.params.nh.lo: unknown key; valid keys are low, high, log"):
        validate_config({"sampling": {"params": {"nh": {"lo": 1}}}})


@pytest.mark.parametrize("stage", ["decoder", "encoder"])
def test_the_xspec_studies_validate_and_generate_this_model(stage, monkeypatch):
    from hpo.study import load_study_config

    root = CONFIG.parents[1]
    monkeypatch.chdir(root)  # the study's relative paths (configs/fspnet.yaml) are from the repository root
    study = load_study_config(root / "studies" / f"xspec_diskbb_powerlaw_{stage}.yaml")
    cfg = study.base_config
    assert cfg["stage"] == stage and cfg["data"]["path"] == "data/xspec_diskbb_powerlaw.h5"
    if stage == "decoder":  # hpo hands the generator config on as dotted overrides: the keys must survive
        gen = validate_config(cfg["data"]["generate"]["config"])
        assert gen.model.expression == "tbabs*(diskbb+powerlaw)"
        assert list(gen.sampling.params) == ["tbabs.nH", "diskbb.Tin", "diskbb.norm", "powerlaw.PhoIndex", "powerlaw.norm"]
