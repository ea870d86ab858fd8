"""python -m fspnet.compare: one table and plot over several runs."""

from __future__ import annotations

import csv
import math
import shutil

import pytest

from fspnet.compare import compare, main
from fspnet.errors import DataError


@pytest.mark.slow
def test_compare_table_and_plot(eval_runs, synth_paths, tmp_path, capsys):
    other = tmp_path / "encoder_copy"
    shutil.copytree(eval_runs["encoder"], other)
    out = tmp_path / "cmp"
    assert (
        main(
            [
                str(eval_runs["encoder"]),
                str(other),
                "--data",
                str(synth_paths["heldout"]),
                "--out",
                str(out),
                "--n-pgstat",
                "6",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "encoder_copy" in printed and "CPU s/spec" in printed
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["run"] for r in rows] == [str(eval_runs["encoder"]), str(other)]
    for r in rows:
        assert int(r["encoder_weights"]) > 0 and int(r["decoder_weights"]) > 0
        assert float(r["cpu_s_per_spectrum"]) > 0
        assert float(r["median_reduced_pgstat"]) > 0.5
        assert 0 <= float(r["mean_median_abs_delta_pct"]) <= float(r["worst_median_abs_delta_pct"])
        assert "median_abs_delta_pct_norm" in r
    # the same weights give the same accuracy
    assert rows[0]["mean_median_abs_delta_pct"] == rows[1]["mean_median_abs_delta_pct"]
    html = (out / "compare.html").read_text()
    assert "data:image/png;base64," in html and (out / "compare.png").is_file()


def test_compare_without_data_measures_speed_only(eval_runs, tmp_path):
    rows = compare([eval_runs["encoder"]], None, tmp_path, timing_batch=64, progress=False)
    assert rows[0]["cpu_s_per_spectrum"] > 0
    assert math.isnan(rows[0]["median_reduced_pgstat"]) and rows[0]["source"] == ""


def test_compare_refuses_a_decoder_run(eval_runs, tmp_path):
    with pytest.raises(DataError, match=r"a decoder run cannot be compared; give encoder runs"):
        compare([eval_runs["decoder"]], None, tmp_path, progress=False)
