"""The report's trials section: thumbnails of the best and pruned trials, linked to their folders."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from hpo._report_trials import TrialsSection
from hpo.report import report
from hpo.run import run_study
from hpo.study import load_study_config, open_study

SPACE = {
    "lr": {"suggest": "float", "kwargs": {"low": 0.001, "high": 0.3, "log": True}, "path": "lr"},
    "momentum": {"suggest": "float", "kwargs": {"low": 0.0, "high": 0.9}, "path": "momentum"},
}


def test_report_shows_top_k_and_pruned_trials_as_linked_thumbnails(write_study):
    path = write_study(
        tune_params=SPACE,
        config={"epochs": 4, "plots": True},
        enqueue=[{"lr": 0.2, "momentum": 0.5}, {"lr": 0.05, "momentum": 0.5}, {"lr": 0.001, "momentum": 0.0}],
        pruner={"name": "ThresholdPruner", "configs": {"upper": 5.0, "n_warmup_steps": 2}},
    )
    run_study(path, 3, progress=False, collate=False)
    cfg = load_study_config(path)
    page = report(cfg).read_text()
    section = page[page.index('<section id="trials">') : page.index('<section id="trials-table">')]
    cards = re.findall(r'<div class="trial-card" data-state="(\w+)"><h3><a href="([^"]+)">trial (\d+)</a>', section)
    assert cards == [("COMPLETE", "trials/0/", "0"), ("COMPLETE", "trials/1/", "1"), ("PRUNED", "trials/2/", "2")]
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    assert len(uris) == 3  # each trial's loss curve
    for uri in uris:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            assert max(im.size) <= 320
    small = TrialsSection.compute(cfg, open_study(cfg), cfg.study_dir, max_bytes=1)
    assert small.truncated and not any(e.thumbnails for e in small.entries)
    assert "the report keeps its size bounded" in small.to_html()
