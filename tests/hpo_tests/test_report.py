from __future__ import annotations

import json

import pytest
import yaml

from hpo.report import FIGURES, main
from hpo.run import run_study
from hpo.study import load_study_config
from hpo.train_best import main as train_best_main


@pytest.mark.slow
def test_report_has_every_figure_and_best_params(write_study, capsys):
    path = write_study(sampler={"name": "RandomSampler", "configs": {"seed": 0}})
    run_study(path, 10, progress=False, collate=False)
    assert main(["--study", str(path)]) == 0
    out = capsys.readouterr().out
    cfg = load_study_config(path)
    page = (cfg.study_dir / "report.html").read_text()
    for key in FIGURES:
        if key == "pareto":
            continue  # single objective
        assert f'id="fig-{key}"' in page and f'id="plot-{key}"' in page, key
    assert 'class="note"' not in page
    assert '<script src="http' not in page and "Plotly.newPlot" in page  # plotly.js is inlined
    assert page.count('<tr class="') == 10 and "sortTable" in page
    best = json.loads((cfg.study_dir / "best_params.json").read_text())
    assert yaml.safe_load((cfg.study_dir / "best_params.yaml").read_text()) == best
    assert best["paths"] == {"lr": "lr", "momentum": "momentum"} and set(best["params"]) == {"lr", "momentum"}
    assert f"best: trial {best['trial']} with val_loss=" in out

    from fspnet.train import read_hyperparams  # the trainer reads hpo's best_params.json as overrides

    assert read_hyperparams(cfg.study_dir / "best_params.json") == {
        "lr": best["params"]["lr"],
        "momentum": best["params"]["momentum"],
    }

    import subprocess  # the study stays readable by Optuna's own CLI

    cli = subprocess.run(
        ["optuna", "best-trial", "--study-name", "tiny", "--storage", cfg.storage, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["number"] == best["trial"]

    assert train_best_main(["--study", str(path), "--seeds", "2"]) == 0
    summary = json.loads((cfg.study_dir / "best" / "summary.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [0, 1] and summary["std"] >= 0
    assert 'id="final-training"' in (cfg.study_dir / "report.html").read_text()
    assert "± " in capsys.readouterr().out


def test_multi_objective_report_has_pareto_front(write_study):
    from hpo.report import report

    path = write_study(
        directions=["minimize", "minimize"],
        metrics=["val_loss", "train_loss"],
        direction=None,
        metric=None,
        sampler={"name": "RandomSampler", "configs": {"seed": 0}},
    )
    run_study(path, 4, progress=False, collate=False)
    page = report(load_study_config(path)).read_text()
    assert 'id="plot-pareto"' in page
    assert "not reported for multi-objective" in page  # intermediate values: a note, not a crash


def test_report_of_missing_study_fails_cleanly(write_study, capsys):
    assert main(["--study", str(write_study())]) == 2
    assert "no study named 'tiny'" in capsys.readouterr().err
