"""Fixtures for the tests that run on the real dev cluster (``slurm/dev-cluster/up.sh``)."""

from __future__ import annotations

import pytest

from tests.slurm_tests._cluster import require_postgres, require_slurm


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A running Slurm (``slurm/dev-cluster/up.sh``, never started here); skips with the reason otherwise."""
    require_slurm()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test PostgreSQL URL; skips with the reason when no server answers."""
    return require_postgres()
