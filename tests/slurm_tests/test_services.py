"""The test helpers use services that are up and never start them (``python -m pytest`` must not
change the system): a missing Slurm or PostgreSQL skips with a one-line reason, or fails under
``FSPNET_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.slurm_tests import _cluster


@pytest.fixture
def no_slurm(monkeypatch):
    """Hide sinfo/sbatch (everything else, apt-get included, stays) and record every command run."""
    real_which = shutil.which
    monkeypatch.setattr(
        _cluster.shutil, "which", lambda name, *a, **k: None if name in ("sinfo", "sbatch") else real_which(name, *a, **k)
    )
    calls: list[list[str]] = []
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        calls.append([str(c) for c in cmd])
        if any("up.sh" in str(c) for c in cmd):
            return subprocess.CompletedProcess(cmd, 1, "", "not started by this test")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(_cluster.subprocess, "run", run)
    monkeypatch.delenv("FSPNET_REQUIRE_SERVICES", raising=False)
    return calls


def test_missing_slurm_skips_with_one_line_and_starts_nothing(no_slurm):
    with pytest.raises(pytest.skip.Exception) as e:
        _cluster.require_slurm()
    assert "\n" not in str(e.value) and "slurm/dev-cluster/up.sh" in str(e.value)
    assert not any("up.sh" in " ".join(c) for c in no_slurm), no_slurm


def test_missing_slurm_fails_when_services_are_required(no_slurm, monkeypatch):
    monkeypatch.setenv("FSPNET_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="FSPNET_REQUIRE_SERVICES=1 but Slurm not installed here"):
        _cluster.require_slurm()


def test_missing_postgres_skips_and_starts_nothing(no_slurm, monkeypatch):
    monkeypatch.setenv("HPO_PG_URL", "postgresql+psycopg2://nobody:x@127.0.0.1:1/none")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL not reachable"):
        _cluster.require_postgres()
    assert not any("up.sh" in " ".join(c) for c in no_slurm), no_slurm
