"""Workers ride out a database server that restarts or drops their connections (issue 11).

The shared dev-cluster PostgreSQL is never restarted here: a restart is played by a TCP proxy
in front of it that drops every connection and refuses new ones for a while, and dropped
connections by ``pg_terminate_backend`` on the worker's own backends (found by their
``application_name``; a role may terminate its own backends).
"""

from __future__ import annotations

import os
import socket
import sqlite3
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

from hpo._retry import RetryingRDBStorage, RetryPolicy, call_with_retry, is_transient
from hpo.study import load_study_config, mask_url, open_study

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- the policy


def _pg_error(text: str) -> sqlalchemy.exc.OperationalError:
    import psycopg2

    return sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg2.OperationalError(text))


def _wrapped(e: Exception) -> optuna.exceptions.StorageInternalError:
    try:
        try:
            raise e
        except Exception as inner:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from inner
    except optuna.exceptions.StorageInternalError as outer:
        return outer


@pytest.mark.parametrize(
    "error, expected",
    [
        (_pg_error("server closed the connection unexpectedly"), True),
        (_pg_error("FATAL: terminating connection due to administrator command"), True),
        (_wrapped(_pg_error("FATAL: the database system is shutting down")), True),
        (sqlalchemy.exc.DisconnectionError("pool pre-ping failed"), True),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")), True),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: trials")), False),
        (_wrapped(sqlalchemy.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))), False),
        (_pg_error('FATAL: password authentication failed for user "optuna"'), False),
        (_pg_error('FATAL: database "nope" does not exist'), False),
        (ValueError("bad value"), False),
    ],
)
def test_is_transient_knows_lost_connections_from_real_errors(error, expected):
    assert is_transient(error) is expected


def test_call_with_retry_backs_off_then_succeeds_or_gives_up():
    sleeps: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _pg_error("server closed the connection unexpectedly")
        return "ok"

    policy = RetryPolicy(total_s=60.0, first_s=0.5, max_s=8.0)
    assert call_with_retry(flaky, "test", policy=policy, sleep=sleeps.append) == "ok"
    assert len(calls) == 4 and len(sleeps) == 3
    assert 0.5 <= sleeps[0] < 1.0 and 1.0 <= sleeps[1] < 2.0 and 2.0 <= sleeps[2] < 4.0  # jittered doubling

    def broken() -> None:
        raise ValueError("not a connection problem")

    with pytest.raises(ValueError, match="not a connection problem"):
        call_with_retry(broken, "test", policy=policy, sleep=sleeps.append)
    assert len(sleeps) == 3  # not retried

    def down() -> None:
        raise _pg_error("connection refused")

    with pytest.raises(sqlalchemy.exc.OperationalError, match="connection refused"):
        call_with_retry(down, "test", policy=RetryPolicy(total_s=0.0), sleep=sleeps.append)


def test_retry_policy_from_env_names_the_variable():
    assert RetryPolicy.from_env({"HPO_STORAGE_RETRY_S": "5"}).total_s == 5.0
    assert RetryPolicy.from_env({}).total_s == 60.0
    with pytest.raises(ValueError, match="HPO_STORAGE_RETRY_S must be a number of seconds >= 0, but got 'soon'"):
        RetryPolicy.from_env({"HPO_STORAGE_RETRY_S": "soon"})


def test_a_tell_whose_commit_went_through_is_not_applied_twice(tmp_path):
    """The connection dies right after the commit of ``tell``: the retry sees the trial told."""
    storage = RetryingRDBStorage(f"sqlite:///{tmp_path}/s.db", retry_policy=RetryPolicy(total_s=10.0, first_s=0.01))
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    from optuna.storages._rdb import models

    told, fired = [], []

    @sqlalchemy.event.listens_for(storage.scoped_session, "after_flush")
    def _see_the_tell(session: tp.Any, _context: tp.Any) -> None:
        told.extend(o for o in session.dirty if isinstance(o, models.TrialModel) and o.state == TrialState.COMPLETE)

    @sqlalchemy.event.listens_for(storage.scoped_session, "after_commit")
    def _lose_the_answer(session: tp.Any) -> None:
        if told and not fired:  # committed; now the answer is lost
            fired.append(1)
            raise _pg_error("server closed the connection unexpectedly")

    study.tell(trial, 1.5)
    assert fired
    done = study.trials[0]
    assert done.state == TrialState.COMPLETE and done.value == 1.5


def test_every_call_of_a_worker_rides_out_a_dropped_query(tmp_path):
    """Through Optuna's cache layer too (it calls private RDBStorage methods): ask, suggest,
    report, should_prune, set_user_attr, get_trials, tell, each with its next query failing."""
    storage = RetryingRDBStorage(f"sqlite:///{tmp_path}/s.db", retry_policy=RetryPolicy(total_s=10.0, first_s=0.01))
    study = optuna.create_study(storage=storage, study_name="s", pruner=optuna.pruners.MedianPruner())
    drops: list[str] = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def _drop(conn: tp.Any, cursor: tp.Any, statement: str, *args: tp.Any) -> None:
        if armed:
            armed.clear()
            drops.append(statement.split()[0])
            raise _pg_error("server closed the connection unexpectedly")

    armed: list[int] = []

    def dropping(fn: tp.Callable[[], tp.Any]) -> tp.Any:
        armed.append(1)
        out = fn()
        assert not armed, "the call made no query"
        return out

    trial = dropping(study.ask)
    x = dropping(lambda: trial.suggest_float("x", 0.0, 1.0))
    dropping(lambda: trial.report(x, 0))
    dropping(trial.should_prune)
    dropping(lambda: trial.set_user_attr("result", {"x": x}))
    assert len(dropping(lambda: study.get_trials(deepcopy=False))) == 1
    dropping(lambda: study.tell(trial, x))
    assert len(drops) == 7
    (done,) = study.get_trials()
    assert done.state == TrialState.COMPLETE and done.value == x and done.user_attrs == {"result": {"x": x}}
    assert done.intermediate_values == {0: x}


# ----------------------------------------------------------------------------- a real server


class _Outage:
    """A TCP proxy to the PostgreSQL server that can play a restart: :meth:`restart` drops every
    connection and refuses new ones for ``down_s`` seconds."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = _free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._stop = False
        self.restarts = 0
        self._listen()

    def _listen(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return  # closed: the "server" is down
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self, down_s: float) -> None:
        self._close_listener()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.restarts += 1
        time.sleep(down_s)
        self._listen()

    def close(self) -> None:
        self._close_listener()

    def _close_listener(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._server.close()
            self._server = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _start_worker(path: Path, url: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hpo.run", "--study", str(path), "--no-progress", "--no-collate"]
    return subprocess.Popen(
        cmd,
        env=_env(HPO_STORAGE=url, HPO_STORAGE_RETRY_S="60", HPO_HEARTBEAT_S="2"),
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _faults_until_done(
    proc: subprocess.Popen, fault: tp.Callable[[], None], every_s: float, limit_s: float = 240
) -> tuple[str, str, int]:
    t_end = time.monotonic() + limit_s
    n = 0
    time.sleep(every_s)
    while proc.poll() is None and time.monotonic() < t_end:
        fault()
        n += 1
        time.sleep(every_s)
    out, err = proc.communicate(timeout=max(1.0, t_end - time.monotonic()))
    return out, err, n


def _check_study(path: Path, url: str, n: int) -> None:
    study = open_study(load_study_config(path, storage=url), storage=url)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    assert not running, f"trials left RUNNING: {running}"
    assert len(complete) >= n, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert sorted(t.number for t in trials) == list(range(len(trials)))


_STUDY = {"pruner": "none", "max_trials": 6, "config": {"epochs": 6, "sleep_s": 0.15}}


@pytest.mark.slow
@pytest.mark.postgres
def test_worker_survives_server_restarts_mid_study(write_study, fresh_pg):
    """Every ~1.2 s the 'server' goes away for 1 s (connections cut, new ones refused)."""
    u = sqlalchemy.engine.make_url(fresh_pg)
    proxy = _Outage(u.host or "127.0.0.1", u.port or 5432)
    url = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    path = write_study(storage=url, **_STUDY)
    try:
        proc = _start_worker(path, url)
        out, err, n = _faults_until_done(proc, lambda: proxy.restart(1.0), every_s=1.2)
    finally:
        proxy.close()
    assert proc.returncode == 0, mask_url(err[-4000:])
    assert n >= 3, f"only {n} restarts happened; the study ran too fast to test anything"
    assert "retry" in err  # it did hit the outage
    _check_study(path, fresh_pg, 6)


@pytest.mark.slow
@pytest.mark.postgres
def test_worker_survives_its_connections_being_terminated(write_study, fresh_pg):
    """``pg_terminate_backend`` on every backend of the worker, every 0.3 s."""
    app = f"hpo_reconnect_{uuid.uuid4().hex[:8]}"
    url = sqlalchemy.engine.make_url(fresh_pg).update_query_dict({"application_name": app}).render_as_string(hide_password=False)
    path = write_study(storage=url, **_STUDY)
    admin = sqlalchemy.create_engine(fresh_pg, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")
    killed = []

    def terminate() -> None:
        with admin.connect() as conn:
            killed.append(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %(app)s AND pid <> pg_backend_pid()) k",
                    {"app": app},
                ).scalar()
            )

    try:
        proc = _start_worker(path, url)
        out, err, n = _faults_until_done(proc, terminate, every_s=0.3)
    finally:
        admin.dispose()
    assert proc.returncode == 0, mask_url(err[-4000:])
    assert sum(killed) >= 3, f"only {sum(killed)} backends terminated"
    _check_study(path, fresh_pg, 6)
