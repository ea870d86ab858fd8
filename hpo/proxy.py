"""``python -m hpo.proxy``: a gRPC storage proxy, so that many workers share a few database connections.

Every ``python -m hpo.run`` worker on a relational storage holds its own small connection pool;
hundreds of GPU workers meet PostgreSQL's connection limit (100 by default). Optuna's
:class:`~optuna.storages.GrpcStorageProxy` lets the workers talk gRPC to one proxy process
(per node or per study) that alone holds the database connections::

    export HPO_STORAGE=postgresql+psycopg://optuna:PASSWORD@dbhost/optuna   # never on a command line
    python -m hpo.proxy --port 13000 &                 # --db-connections 8: the proxy's whole pool
    HPO_STORAGE=grpc://$(hostname):13000 python -m hpo.run --study studies/x.yaml --n-trials 100

Workers accept ``grpc://HOST:PORT`` wherever a storage URL goes (:func:`hpo.study.make_storage`).
The study-wide lock (``max_trials``, creating a study) then works through storage operations
(:func:`hpo.study.study_lock`); heartbeats and reaping use the storage API and work unchanged.
The proxy records the proxied database's identity (password masked) so that workers behind any
proxy of the same database share study folders. The proxy prints its URL, never the password.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import typing as tp
import warnings
from concurrent.futures import ThreadPoolExecutor

import optuna

from hpo.errors import HpoError
from hpo.study import make_storage, mask_url, record_proxied_identity, storage_url

__all__ = ["main", "serve"]

_LOG = logging.getLogger(__name__)


def serve(
    url: str,
    *,
    host: str = "0.0.0.0",
    port: int = 13000,
    threads: int = 16,
    db_connections: int = 8,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the storage ``url`` over gRPC on ``host:port`` until ``stop`` is set (or forever).

    Args:
        url: a relational storage URL (PostgreSQL, MySQL, SQLite); journal storages cannot be
            proxied (Optuna 5.0).
        host: address to listen on (``0.0.0.0``: every interface).
        port: TCP port.
        threads: gRPC request threads.
        db_connections: the most database connections the proxy opens (its pool).
        ready: set once the server listens.
        stop: set it to stop the server.

    Raises:
        HpoError: for a storage that cannot be proxied or opened, or a port in use.
    """
    from optuna.storages._grpc.server import make_server

    if url.startswith(("journal:", "grpc://")) or "://" not in url:
        raise HpoError(
            f"storage {mask_url(url)!r}: a gRPC proxy serves a relational storage "
            "(postgresql+psycopg://..., mysql://..., sqlite:///PATH), not a journal or another proxy"
        )
    if threads < 1 or db_connections < 1:
        raise HpoError(f"--threads and --db-connections must be >= 1, but got {threads} and {db_connections}")
    engine_kwargs: dict[str, tp.Any] = {"pool_pre_ping": True, "pool_size": db_connections, "max_overflow": 0}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60.0}}
    rdb = make_storage(url, engine_kwargs=engine_kwargs)
    # Optuna's own advice: serve the cached storage (completed trials are read from memory).
    storage = optuna.storages.get_storage(rdb)
    record_proxied_identity(storage, url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        server = make_server(storage, host, port, ThreadPoolExecutor(max_workers=threads))
    try:
        server.start()
    except RuntimeError as e:
        raise HpoError(f"hpo.proxy: cannot listen on {host}:{port} ({e}); choose another --port") from None
    _LOG.info(
        "serving %s on grpc://%s:%d (%d threads, <= %d database connections)", mask_url(url), host, port, threads, db_connections
    )
    if ready is not None:
        ready.set()
    try:
        (stop or threading.Event()).wait()
    finally:
        server.stop(grace=5.0).wait()


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.proxy``."""
    parser = argparse.ArgumentParser(prog="hpo-proxy", description="Serve a study storage to workers over gRPC.")
    parser.add_argument("--storage", default=None, help="relational storage URL (default $HPO_STORAGE, which keeps it off ps)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default every interface)")
    parser.add_argument("--port", type=int, default=13000)
    parser.add_argument("--threads", type=int, default=16, help="gRPC request threads (default 16)")
    parser.add_argument("--db-connections", type=int, default=8, help="database connections at most (default 8)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    url = storage_url(args.storage)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if url is None:
        print("hpo-proxy: error: give --storage or set HPO_STORAGE", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = threading.Event()
    try:
        serve(
            url, host=args.host, port=args.port, threads=args.threads, db_connections=args.db_connections, ready=ready, stop=stop
        )
    except HpoError as e:
        print(f"hpo-proxy: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
