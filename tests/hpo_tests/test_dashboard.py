"""Trial artifacts (plots, best weights) seen through a real optuna-dashboard server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hpo.run import run_study
from hpo.study import load_study_config, open_study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_trial_plots_and_weights_show_in_optuna_dashboard(write_study):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard not installed (pip install 'fspnet[dashboard]')")
    path = write_study(artifacts=True, config={"epochs": 3, "plots": True}, pruner="none")
    run_study(path, 2, progress=False, collate=False)
    cfg = load_study_config(path)
    study = open_study(cfg)
    port = _free_port()
    exe = shutil.which("optuna-dashboard")
    cmd = [exe] if exe else [sys.executable, "-m", "optuna_dashboard"]
    server = subprocess.Popen(
        [*cmd, cfg.storage, "--artifact-dir", str(cfg.study_dir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"optuna-dashboard did not start: {server.stderr.read().decode()[-2000:] if server.poll() is not None else 'timeout'}"
                    )
                time.sleep(0.3)
        sid = next(s["study_id"] for s in studies if s["study_name"] == "tiny")
        detail = json.loads(_get(f"{base}/api/studies/{sid}"))
        assert len(detail["trials"]) == 2
        for t in detail["trials"]:
            names = {a["filename"]: a for a in t["artifacts"]}
            assert set(names) == {"loss_curve.png", "best.safetensors"}
            assert names["loss_curve.png"]["mimetype"] == "image/png"
            run_dir = cfg.trial_dir(t["number"])
            for filename, a in names.items():
                body = _get(f"{base}/artifacts/{sid}/{t['trial_id']}/{a['artifact_id']}")
                assert body == (run_dir / filename).read_bytes()
        assert {t._trial_id for t in study.trials} == {t["trial_id"] for t in detail["trials"]}
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()
