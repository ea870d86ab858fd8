"""Workers through a gRPC storage proxy (``python -m hpo.proxy``): the study completes, the cap
holds, and the database sees only the proxy's few connections."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import typing as tp
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpo.errors import HpoError
from hpo.study import IDENTITY_FILE, load_study_config, make_storage, mask_url, open_study, storage_identity, study_lock

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(fresh_pg: str) -> tp.Iterator[tuple[str, str, str, str]]:
    """``(grpc URL, database URL, the proxy's database URL, application_name)``: a proxy
    subprocess of a fresh database that marks its connections with a unique ``application_name``."""
    app = f"hpo-proxy-test-{uuid.uuid4().hex[:8]}"
    db = sqlalchemy.engine.make_url(fresh_pg).update_query_dict({"application_name": app})
    db_url = db.render_as_string(hide_password=False)
    port = _free_port()
    cmd = [sys.executable, "-m", "hpo.proxy", "--host", "127.0.0.1", "--port", str(port), "--db-connections", "3"]
    p = subprocess.Popen(cmd, env=_env(HPO_STORAGE=db_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield f"grpc://127.0.0.1:{port}", fresh_pg, db_url, app
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=30)
        assert f":{db.password}@" not in out and "***@" in out, "hpo.proxy printed the database password"


def _connections(db_url: str, app: str) -> int:
    engine = sqlalchemy.create_engine(db_url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        q = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a")
        return int(conn.execute(q, {"a": app}).scalar() or 0)


@pytest.mark.postgres
def test_four_workers_through_a_proxy_complete_the_capped_study_on_few_connections(write_study, proxy):
    url, db_url, proxied_url, app = proxy
    make_storage(url)  # waits for the proxy to answer
    path = write_study(storage=url, pruner="none", max_trials=10, config={"epochs": 2})
    cmd = [sys.executable, "-m", "hpo.run", "--study", str(path), "--no-progress", "--no-collate"]
    workers = [
        subprocess.Popen(cmd, env=_env(), cwd=path.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    peak = 0
    while any(w.poll() is None for w in workers):
        peak = max(peak, _connections(db_url, app))
        time.sleep(0.2)
    for w in workers:
        _, err = w.communicate(timeout=60)
        assert w.returncode == 0, mask_url(err[-3000:])
    cfg = load_study_config(path)
    study = open_study(cfg)
    assert sorted(t.number for t in study.trials) == list(range(10))  # the cap holds through the proxy lock
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert 1 <= peak <= 3, f"the database saw {peak} connections of the proxy (--db-connections 3)"
    # Study folders are keyed by the proxied database, so direct access to it binds the same folder.
    ident = json.loads((cfg.study_dir / IDENTITY_FILE).read_text())
    assert ident["storage"] == storage_identity(proxied_url) == storage_identity(url)


@pytest.mark.postgres
def test_storage_lock_through_a_proxy_is_exclusive(proxy):
    url, *_ = proxy
    storage = make_storage(url)
    inside, overlap = [0], []

    def hold() -> None:
        for _ in range(5):
            with study_lock(url, "excl"):
                inside[0] += 1
                overlap.append(inside[0])
                time.sleep(0.01)
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert overlap == [1] * 15
    lock_study = optuna.load_study(study_name="hpo:lock:excl", storage=storage)
    # Racing first users may each add a lock trial (the lowest id is the lock); all are released.
    assert lock_study.trials and all(t.state == TrialState.WAITING for t in lock_study.trials)


def test_grpc_url_without_a_port_or_proxy_is_refused(monkeypatch):
    with pytest.raises(HpoError, match=r"storage 'grpc://nohost': expected grpc://HOST:PORT"):
        make_storage("grpc://nohost")
    port = _free_port()
    monkeypatch.setenv("HPO_GRPC_TIMEOUT_S", "0.5")
    with pytest.raises(HpoError, match=rf"grpc://127.0.0.1:{port}: no gRPC storage proxy answers.*python -m hpo.proxy"):
        make_storage(f"grpc://127.0.0.1:{port}")


def test_proxy_refuses_a_journal_storage(tmp_path):
    from hpo.proxy import main

    assert main(["--storage", f"journal:{tmp_path}/x.journal", "--port", str(_free_port())]) == 2
