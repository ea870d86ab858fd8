"""Study files, and the storage / sampler / pruner factories with their name registries.

:func:`load_study_config` reads a ``studies/*.yaml`` file and checks *all* of it (keys,
sampler, pruner, search space, the trainable's base config and every ``tune_params`` path)
before any trial runs, raising one :class:`~hpo.errors.StudyConfigError` that lists every
problem with its key path. The factories accept ``None``, a name, a ``{name, configs}``
mapping or an instance, like :func:`optuna.create_study` does.

Example:
    >>> from hpo.study import make_pruner, make_sampler
    >>> type(make_sampler({"name": "TPESampler", "configs": {"multivariate": True}}, seed=0)).__name__
    'TPESampler'
    >>> type(make_pruner(None)).__name__
    'HyperbandPruner'
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import threading
import time
import typing as tp
import warnings
from pathlib import Path

import optuna

if tp.TYPE_CHECKING:
    import argparse

from hpo import _features
from hpo._plugins import load_entry_points
from hpo._scratch import ScratchSection, check_stage_keys
from hpo.errors import HpoError, StudyConfigError
from hpo.space import TuneParam, apply_params, parse_tune_params
from runtools.io import read_mapping, write_json
from runtools.provenance import (  # the one owner of URL masking (runtools is the bottom layer)
    mask_secrets,
    mask_url,
)
from runtools.schema import Check, build, field, field_docs

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "STORAGE_ENV",
    "STUDY_KEYS",
    "StudyConfig",
    "add_override_arguments",
    "bind_study_dir",
    "check_search_space",
    "coalesced_writes",
    "create_or_load_study",
    "load_study_config",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "override_list",
    "mask_url",
    "open_study",
    "register_section",
    "storage_identity",
    "storage_url",
    "study_lock",
]

#: Environment variable holding the storage URL when ``--storage`` is not given (keeps a password
#: off command lines, ``ps`` and ``scontrol show job``).
STORAGE_ENV = "HPO_STORAGE"
#: A study name is one safe path segment: it names the folder ``<output_dir>/<name>``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: File in the study folder recording which study (storage + name) its trial folders belong to.
IDENTITY_FILE = "study-identity.json"

_LOG = logging.getLogger(__name__)

#: Samplers by Optuna class name, with short aliases.
SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "TPESampler": optuna.samplers.TPESampler,
    "RandomSampler": optuna.samplers.RandomSampler,
    "CmaEsSampler": optuna.samplers.CmaEsSampler,
    "GPSampler": optuna.samplers.GPSampler,
    "QMCSampler": optuna.samplers.QMCSampler,
    "NSGAIISampler": optuna.samplers.NSGAIISampler,
    "NSGAIIISampler": optuna.samplers.NSGAIIISampler,
    "BruteForceSampler": _features.BruteForceSampler,
    "GridSampler": _features.GridSampler,  # grid from tune_params, or configs.search_space
}
_SAMPLER_ALIASES = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "bruteforce": "BruteForceSampler",
    "grid": "GridSampler",
}

#: Pruners by Optuna class name, with short aliases; ``none`` disables pruning.
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "HyperbandPruner": optuna.pruners.HyperbandPruner,
    "MedianPruner": optuna.pruners.MedianPruner,
    "SuccessiveHalvingPruner": optuna.pruners.SuccessiveHalvingPruner,
    "PatientPruner": optuna.pruners.PatientPruner,
    "PercentilePruner": optuna.pruners.PercentilePruner,
    "ThresholdPruner": optuna.pruners.ThresholdPruner,
    "WilcoxonPruner": optuna.pruners.WilcoxonPruner,
    "NopPruner": optuna.pruners.NopPruner,
}
_PRUNER_ALIASES = {
    "hyperband": "HyperbandPruner",
    "median": "MedianPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "patient": "PatientPruner",
    "percentile": "PercentilePruner",
    "threshold": "ThresholdPruner",
    "wilcoxon": "WilcoxonPruner",
    "none": "NopPruner",
    "nop": "NopPruner",
}


def _int_at_least(low: int, *, nullable: bool = False) -> Check:
    def check(v: tp.Any) -> str | None:
        return None if v >= low else f"must be an integer >= {low}{' or null' if nullable else ''}, but got {v!r}"

    return check


def _seconds(v: tp.Any) -> str | None:
    return None if v > 0 else f"must be a positive number of seconds or null, but got {v!r}"


@dataclasses.dataclass
class _TrainBestSection:
    """``train_best:`` of a study file (defaults are :mod:`hpo.train_best`'s)."""

    seeds: int | None = field(None, _int_at_least(1), "number of seeds of the final training")
    config: dict[str, tp.Any] = field({}, None, "config overrides of the final training")


@dataclasses.dataclass
class _StudyFile:
    """The top-level keys of a study file (the features' keys are :data:`hpo._features.FEATURE_KEYS`).

    Fields typed ``tp.Any`` are checked by :func:`load_study_config` itself (they need other keys
    or the trainable); the others are checked here by :func:`runtools.schema.build`.
    """

    name: tp.Any = field(None, None, "study name (required)")
    output_dir: tp.Any = field("outputs", None, "folder for <name>/trials, collated, report.html (default outputs)")
    storage: tp.Any = field(None, None, "SQLAlchemy URL, journal:PATH, or null for sqlite in <output_dir>/<name>/study.db")
    direction: tp.Any = field(None, None, "minimize or maximize")
    directions: tp.Any = field(None, None, "list of directions (multi-objective)")
    metric: tp.Any = field(None, None, "metric the trainable reports, e.g. val_loss")
    metrics: tp.Any = field(None, None, "list of metrics (multi-objective), one per direction")
    sampler: tp.Any = field(None, None, "{name, configs}: an Optuna sampler class name")
    pruner: tp.Any = field(None, None, "{name, configs}: an Optuna pruner class name or none (default HyperbandPruner)")
    n_trials: int | None = field(None, _int_at_least(1, nullable=True), "trials per process when --n-trials is not given")
    max_trials: int | None = field(
        None, _int_at_least(1, nullable=True), "study-wide cap on the number of trials (all states), shared by every worker"
    )
    timeout: float | None = field(None, _seconds, "seconds per process")
    seed: int = field(0, None, "base seed of samplers and trainables")
    trainable: tp.Any = field("fspnet", None, "fspnet, mlp, or module:function")
    config_file: tp.Any = field(None, None, "the trainable's base config file (YAML/JSON)")
    config: tp.Any = field(None, None, "overrides of the trainable's base config (nested or dotted keys)")
    quick_scan: tp.Any = field(False, None, "false, or the number of training samples for a fast debug study")
    tune_params: tp.Any = field(None, None, "{name: {state, suggest: int|float|cat, kwargs, path}}")
    collate_results: bool = field(True, None, "copy plots and top-k weights into <output_dir>/<name>/collated")
    append_params: bool = field(True, None, "append name=value pairs to collated file names")
    keep_top_k: int = field(3, _int_at_least(0), "weights of the best k trials kept in collated/")
    train_best: _TrainBestSection | None = field(None, None, "{seeds, config}: final training of the best params")
    scratch: ScratchSection | None = field(
        None, None, "{dir: auto|PATH|null, stage: [config keys], copy_back: [patterns]}: train in node-local scratch"
    )


_STUDY_FIELDS = frozenset(f.name for f in dataclasses.fields(_StudyFile))

#: Top-level keys of a study file and what they hold (from :class:`_StudyFile` and the features).
STUDY_KEYS: dict[str, str] = {
    **field_docs(_StudyFile),
    **_features.FEATURE_KEYS,  # enqueue, warm_start, constraints, max_retries, artifacts, tracking
}

#: Extra top-level sections owned by other packages (e.g. ``slurm``) and their validators.
_SECTIONS: dict[str, tp.Callable[[tp.Any], list[tuple[str, str]]]] = {}


def register_section(name: str, validator: tp.Callable[[tp.Any], list[tuple[str, str]]]) -> None:
    """Allow the top-level section ``name`` in study files, checked by ``validator``.

    ``validator(value)`` returns ``(key_path, message)`` problems; they are reported with
    every other error of the file. Used by :mod:`slurm` for its ``slurm:`` section.
    """
    _SECTIONS[name] = validator


@dataclasses.dataclass
class StudyConfig:
    """A validated study file.

    Attributes:
        path: the study file.
        name: the study name in storage.
        output_dir: parent of ``study_dir``.
        storage: storage URL (may hold a password: print it through :func:`mask_url`).
        directions, metrics: one per objective.
        sampler, pruner: the ``{name, configs}`` specs.
        base_config: the trainable's resolved config before tuning.
        tune_params: the search space.
        raw: the file as read.
    """

    path: Path
    name: str
    output_dir: Path
    storage: str
    directions: list[str]
    metrics: list[str]
    sampler: dict[str, tp.Any]
    pruner: dict[str, tp.Any]
    n_trials: int | None
    max_trials: int | None
    timeout: float | None
    seed: int
    trainable: str
    config_file: Path | None
    base_config: dict[str, tp.Any]
    quick_scan: int | None
    tune_params: list[TuneParam]
    collate_results: bool = True
    append_params: bool = True
    keep_top_k: int = 3
    train_best: dict[str, tp.Any] = dataclasses.field(default_factory=dict)
    raw: dict[str, tp.Any] = dataclasses.field(default_factory=dict)
    #: enqueue, warm_start, constraints, max_retries, artifacts, tracking (see :mod:`hpo._features`).
    features: _features.Features = dataclasses.field(default_factory=_features.Features)
    #: Node-local scratch (see :mod:`hpo._scratch`); ``scratch.enabled`` is false by default.
    scratch: ScratchSection = dataclasses.field(default_factory=ScratchSection)

    @property
    def study_dir(self) -> Path:
        """``<output_dir>/<name>``."""
        return self.output_dir / self.name

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def trial_dir(self, number: int) -> Path:
        """The run directory of trial ``number``: ``<output_dir>/<name>/trials/<number>``."""
        return self.study_dir / "trials" / str(number)

    def get_trainable(self) -> tp.Any:
        """The :class:`~hpo.trainables.Trainable` of this study."""
        from hpo.trainables import get_trainable

        return get_trainable(self.trainable)

    def sampler_for(self, worker_seed: int | None) -> optuna.samplers.BaseSampler:
        return make_sampler(
            self.sampler, seed=worker_seed, tune_params=self.tune_params, constraints=bool(self.features.constraints)
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner)


# ----------------------------------------------------------------------------- factories


@contextlib.contextmanager
def _file_lock(path: Path) -> tp.Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if needed) for the body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_storage(
    url: str | optuna.storages.BaseStorage | None,
    *,
    engine_kwargs: dict[str, tp.Any] | None = None,
    **rdb_kwargs: tp.Any,
) -> optuna.storages.BaseStorage:
    """Build an Optuna storage from a URL.

    Args:
        url: ``None`` (in memory), a storage instance (returned as is), ``journal:PATH``
            (:class:`~optuna.storages.journal.JournalFileBackend`, for shared filesystems with
            no server), ``grpc://HOST:PORT`` (:class:`~optuna.storages.GrpcStorageProxy`: a proxy
            started by ``python -m hpo.proxy`` holds the database connections), ``sqlite:///PATH`` (local disk; WAL journal and a 60 s busy timeout so
            many workers do not see "database is locked") or any other SQLAlchemy URL such as
            ``postgresql+psycopg://user:pass@host/db`` (psycopg 3; ``postgresql+psycopg2://`` works too; pool pre-ping, a small pool per worker).
        engine_kwargs: SQLAlchemy engine options that replace the defaults above.
        **rdb_kwargs: passed to :class:`~optuna.storages.RDBStorage` (e.g. heartbeat_interval).

    Raises:
        HpoError: when the storage cannot be opened; the message masks any password.
    """
    if url is None:
        return optuna.storages.InMemoryStorage()
    if isinstance(url, optuna.storages.BaseStorage):
        return url
    url = os.path.expandvars(url)
    if url.startswith("grpc://"):
        return _grpc_storage(url)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise HpoError(
            f"storage {mask_url(url)!r}: expected a SQLAlchemy URL (sqlite:///PATH, postgresql+psycopg://...) or journal:PATH"
        )
    try:
        db = _sqlite_path(url)
    except Exception as e:
        raise HpoError(f"storage {mask_url(url)!r}: not a valid URL ({type(e).__name__})") from None
    try:
        if db is not None:
            kwargs = engine_kwargs or {"connect_args": {"timeout": 60.0}}
            # Many workers create the tables at once on first use; one at a time avoids races.
            with _file_lock(db.with_name(db.name + ".lock")):
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **rdb_kwargs)
                _enable_wal(storage)
            return storage
        kwargs = engine_kwargs or {"pool_pre_ping": True, "pool_size": 1, "max_overflow": 2, "pool_recycle": 3600}
        return _create_server_storage(url, kwargs, rdb_kwargs)
    except HpoError:
        raise
    except Exception as e:
        msg = mask_secrets(str(e).replace(url, mask_url(url)))
        raise HpoError(
            f"storage {mask_url(url)}: cannot open ({type(e).__name__}: {msg.splitlines()[0] if msg else ''})"
        ) from None


_GRPC_STORAGES: dict[tuple[str, int], optuna.storages.BaseStorage] = {}  # one channel per proxy and process


def _grpc_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a ``grpc://HOST:PORT`` URL."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        host, port = u.hostname, u.port
    except ValueError:
        host, port = None, None
    if not host or port is None or u.path not in ("", "/") or u.query:
        raise HpoError(f"storage {mask_url(url)!r}: expected grpc://HOST:PORT (a proxy started by python -m hpo.proxy)")
    return host, port


def _grpc_storage(url: str) -> optuna.storages.BaseStorage:
    """A :class:`~optuna.storages.GrpcStorageProxy` client, once its server answers (60 s at most)."""
    import warnings

    host, port = _grpc_address(url)
    cached = _GRPC_STORAGES.get((host, port))
    if cached is not None:
        return cached
    try:
        importlib.import_module("grpc")  # optional: pip install fspnet[grpc]
    except ImportError:
        raise HpoError(f"storage {url}: grpc:// storages need grpcio; pip install 'fspnet[grpc]'") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.GrpcStorageProxy(host=host, port=port)
        storage.wait_server_ready(timeout=float(os.environ.get("HPO_GRPC_TIMEOUT_S", "60")))
    except Exception as e:
        raise HpoError(
            f"storage {url}: no gRPC storage proxy answers ({type(e).__name__}); start one with "
            f"python -m hpo.proxy --port {port} (storage URL from $HPO_STORAGE)"
        ) from None
    _GRPC_STORAGES[(host, port)] = storage
    return storage


def _create_server_storage(
    url: str, engine_kwargs: dict[str, tp.Any], rdb_kwargs: dict[str, tp.Any]
) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)`` for a database server, safe when many workers start on a fresh database
    and when the server restarts later (:class:`hpo._retry.RetryingRDBStorage`).

    Optuna creates its tables on first use; concurrent ``CREATE TABLE``s race on PostgreSQL
    (``UniqueViolation`` on ``pg_type_typname_nsp_index``). The creation runs under a server-side
    lock (PostgreSQL advisory lock, MySQL ``GET_LOCK``) and is retried, like a refused connection
    while the server restarts, under the one storage retry policy (:mod:`hpo._retry`).
    """
    import sqlalchemy.exc

    from hpo._retry import RetryingRDBStorage, call_with_retry, is_transient

    def racing(e: BaseException) -> bool:  # workers that do not share the lock (e.g. old ones) race
        return isinstance(
            e, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, optuna.exceptions.StorageInternalError)
        ) or is_transient(e)

    def attempt() -> optuna.storages.RDBStorage:
        with _server_lock(url, "hpo:create-tables"):
            return RetryingRDBStorage(url, engine_kwargs=engine_kwargs, **rdb_kwargs)

    return call_with_retry(attempt, f"storage {mask_url(url)}: opening", transient=racing)


_LOCK_ENGINES: dict[str, tp.Any] = {}
_LOCAL_LOCKS: dict[tp.Any, threading.Lock] = {}


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _server_lock(url: str, key: str) -> tp.Iterator[None]:
    """An exclusive lock named ``key`` on the database server of ``url`` (PostgreSQL advisory lock,
    MySQL/MariaDB ``GET_LOCK``); a no-op for other backends. Released when the body ends or the
    connection dies."""
    import sqlalchemy

    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    if backend not in ("postgresql", "mysql", "mariadb"):
        yield
        return
    engine = _LOCK_ENGINES.get(url)
    if engine is None:
        engine = _LOCK_ENGINES[url] = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    def acquire() -> tp.Any:  # retried while the server restarts (hpo._retry)
        conn = engine.connect()
        try:
            if backend == "postgresql":
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_id(key)})
                conn.commit()
            else:
                got = conn.execute(sqlalchemy.text("SELECT GET_LOCK(:k, 600)"), {"k": key[:64]}).scalar()
                if got != 1:
                    raise HpoError(f"storage {mask_url(url)}: could not take the lock {key!r} within 600 s")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return conn

    from hpo._retry import call_with_retry

    conn = call_with_retry(acquire, f"storage {mask_url(url)}: lock {key!r}")
    try:
        yield
    finally:
        unlock = "SELECT pg_advisory_unlock(:k)" if backend == "postgresql" else "SELECT RELEASE_LOCK(:k)"
        with contextlib.suppress(Exception):  # a dead connection has released it already
            conn.execute(sqlalchemy.text(unlock), {"k": _lock_id(key) if backend == "postgresql" else key[:64]})
            conn.commit()
        with contextlib.suppress(Exception):
            conn.close()


@contextlib.contextmanager
def coalesced_writes(storage: optuna.storages.BaseStorage) -> tp.Iterator[None]:
    """Append the journal records that this thread writes in the body as one append (one file
    lock, one fsync) when the body ends, even when it raises; other storages write as usual.

    Only for bodies whose writes need not be read back before the body ends (e.g. a finished
    trial's user attrs followed by its ``tell``): until then the storage does not see them.
    Other threads (a heartbeat) write through as usual.
    """
    from optuna.storages.journal import JournalStorage

    # Not a subclass (the batching uses its internals); nested: the outer body batches already.
    if type(storage) is not JournalStorage or "_write_log" in vars(storage):
        yield
        return
    owner = threading.get_ident()
    pending: list[dict[str, tp.Any]] = []
    write_log = storage._write_log

    def deferred(op_code: int, extra_fields: dict[str, tp.Any]) -> None:
        if threading.get_ident() != owner:
            write_log(op_code, extra_fields)
            return
        pending.append({"op_code": op_code, "worker_id": storage._replay_result.worker_id, **extra_fields})

    storage._write_log = deferred  # type: ignore[method-assign]
    try:
        yield
    finally:
        del storage._write_log  # back to the class's method
        if pending:
            with storage._thread_lock:
                storage._backend.append_logs(pending)
                storage._sync_with_backend()


@contextlib.contextmanager
def study_lock(storage: str | optuna.storages.BaseStorage | None, name: str) -> tp.Iterator[None]:
    """Hold an exclusive lock on study ``name`` of ``storage`` for the body, across processes and
    machines that share the storage.

    Used to make the study-wide ``max_trials`` cap exact (count and create a trial atomically) and
    to create a study once. The lock lives where the storage does: a file lock beside an SQLite
    or journal file, a server lock on PostgreSQL/MySQL, a lock made of storage operations for a
    ``grpc://`` proxy (:func:`_storage_lock`), a process lock for in-memory storages.
    """
    url = os.path.expandvars(storage) if isinstance(storage, str) else None
    if url is not None and url.startswith("grpc://"):
        with _storage_lock(make_storage(url), name):
            yield
        return
    if url is not None and url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        with _file_lock(path.with_name(path.name + ".hpo-lock")):
            yield
        return
    if url is not None and "://" in url:
        db = _sqlite_path(url)
        if db is not None:
            with _file_lock(db.with_name(db.name + ".hpo-lock")):
                yield
            return
        with _server_lock(url, f"hpo:study:{name}"):
            yield
        return
    lock = _LOCAL_LOCKS.setdefault((id(storage), name), threading.Lock())
    with lock:
        yield


_LOCK_STUDY_PREFIX = "hpo:lock:"
#: A holder of a storage lock that keeps it this long without releasing it is taken to be dead.
STORAGE_LOCK_LEASE_S = 300.0


@contextlib.contextmanager
def _storage_lock(storage: optuna.storages.BaseStorage, name: str) -> tp.Iterator[None]:
    """An exclusive lock named ``name`` built from storage operations alone (for a gRPC proxy,
    whose clients cannot reach the database's own locks).

    The lock is the one trial of the study ``hpo:lock:<name>``: taking it moves the trial from
    WAITING to RUNNING, which Optuna's storages do for exactly one caller (a row lock on the
    database); releasing moves it back. A holder that died inside the body (the bodies are a
    count and an ``ask()``) leaves it RUNNING: a waiter that sees the same holder (the trial's
    ``datetime_start``) for :data:`STORAGE_LOCK_LEASE_S` of its own clock takes it over.
    """
    study_name = _LOCK_STUDY_PREFIX + name
    try:
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], study_name)
    except optuna.exceptions.DuplicatedStudyError:
        study_id = storage.get_study_id_from_name(study_name)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    if not trials:  # two first workers may both add one: the lowest trial id is the lock
        storage.create_new_trial(study_id, optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING))
        trials = storage.get_all_trials(study_id, deepcopy=False)
    lock_id = min(t._trial_id for t in trials)
    seen: tuple[tp.Any, float] | None = None
    delay_s = 0.005
    while not storage.set_trial_state_values(lock_id, optuna.trial.TrialState.RUNNING):
        holder = storage.get_trial(lock_id).datetime_start
        now = time.monotonic()
        if seen is None or seen[0] != holder:
            seen = (holder, now)
        elif now - seen[1] > STORAGE_LOCK_LEASE_S:
            _LOG.warning("storage lock %r: holder since %s never released it; taking it over", name, holder)
            storage.set_trial_state_values(lock_id, optuna.trial.TrialState.WAITING)
            seen = None
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.2)
    try:
        yield
    finally:
        storage.set_trial_state_values(lock_id, optuna.trial.TrialState.WAITING)


def storage_url(cli_value: str | None) -> str | None:
    """The storage URL of a command: ``--storage`` if given, else ``$HPO_STORAGE``, else ``None``
    (the study file's)."""
    return cli_value or os.environ.get(STORAGE_ENV) or None


def _enable_wal(storage: optuna.storages.RDBStorage) -> None:
    """Switch the SQLite file to WAL once (persistent) and set a busy timeout on every connection."""
    import sqlalchemy

    engine = storage.engine

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: tp.Any, _record: tp.Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    engine.dispose()  # new connections pick up the listener


def _resolve_name(kind: str, name: str, table: dict[str, type], aliases: dict[str, str], group: str) -> type:
    registry = {**load_entry_points(group), **table}
    if name in registry:
        return registry[name]
    if name.lower() in aliases:
        return table[aliases[name.lower()]]
    raise StudyConfigError(
        f"{kind}.name: unknown {name!r}; choose one of {', '.join(sorted(registry))} (or {', '.join(sorted(aliases))})"
    )


def _split_spec(kind: str, spec: tp.Any) -> tuple[str, dict[str, tp.Any]]:
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict):
        raise StudyConfigError(f"{kind}: must be a name or a mapping {{name, configs}}, but got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "configs"})
    if unknown:
        raise StudyConfigError(f"{kind}.{unknown[0]}: unknown key; valid keys are name, configs")
    name, configs = spec.get("name"), spec.get("configs") or {}
    if not isinstance(name, str):
        raise StudyConfigError(
            f"{kind}.name: required, a class name such as {'TPESampler' if kind == 'sampler' else 'HyperbandPruner'}"
        )
    if not isinstance(configs, dict):
        raise StudyConfigError(f"{kind}.configs: must be a mapping of keyword arguments, but got {type(configs).__name__}")
    return name, dict(configs)


def _construct(kind: str, cls: type, configs: dict[str, tp.Any]) -> tp.Any:
    params = inspect.signature(cls).parameters
    valid = [
        p
        for p in params
        if p != "self" and params[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]
    for key in configs:
        if key not in valid:
            raise StudyConfigError(f"{kind}.configs.{key}: unknown argument of {cls.__name__}; valid are {', '.join(valid)}")
    try:
        return cls(**configs)
    except (TypeError, ValueError) as e:
        raise StudyConfigError(f"{kind}.configs: {cls.__name__} rejects them: {e}") from None


def make_sampler(
    spec: tp.Any = None, *, seed: int | None = None, tune_params: tp.Sequence[TuneParam] | None = None, constraints: bool = False
) -> optuna.samplers.BaseSampler:
    """Build a sampler from ``None`` (TPE), a class name, ``{name, configs}`` or an instance.

    ``seed`` is passed when the sampler takes one and ``configs`` does not set it. With
    ``tune_params``, a ``GridSampler`` gets its ``search_space`` from them (``configs.search_space``
    may list the values of some or all parameters). With ``constraints``, a sampler that takes
    ``constraints_func`` reads the trials' recorded constraint values (:mod:`hpo._features`).

    Raises:
        StudyConfigError: naming ``sampler.name`` or ``sampler.configs.<key>``.
    """
    if isinstance(spec, optuna.samplers.BaseSampler):
        return spec
    name, configs = ("TPESampler", {}) if spec is None else _split_spec("sampler", spec)
    cls = _resolve_name("sampler", name, SAMPLERS, _SAMPLER_ALIASES, "hpo.samplers")
    if seed is not None and "seed" in inspect.signature(cls).parameters and "seed" not in configs:
        configs["seed"] = seed
    if issubclass(cls, (optuna.samplers.GridSampler, optuna.samplers.BruteForceSampler)):
        configs = _features.make_grid_sampler(cls, configs, tune_params)
    if constraints and not _features.NATIVE_CONSTRAINTS and "constraints_func" in inspect.signature(cls).parameters:
        configs.setdefault("constraints_func", _features.constraints_func)
    return _construct("sampler", cls, configs)


def make_pruner(spec: tp.Any = None) -> optuna.pruners.BasePruner:
    """Build a pruner from ``None`` (Hyperband), a class name or ``none``, ``{name, configs}``
    or an instance. ``PatientPruner`` takes ``configs.wrapped_pruner`` as another such spec.

    Raises:
        StudyConfigError: naming ``pruner.name`` or ``pruner.configs.<key>``.
    """
    if isinstance(spec, optuna.pruners.BasePruner):
        return spec
    if spec is None:
        return optuna.pruners.HyperbandPruner()
    name, configs = _split_spec("pruner", spec)
    cls = _resolve_name("pruner", name, PRUNERS, _PRUNER_ALIASES, "hpo.pruners")
    if cls is optuna.pruners.PatientPruner:
        wrapped = configs.get("wrapped_pruner")
        try:
            configs["wrapped_pruner"] = None if wrapped is None else make_pruner(wrapped)
        except StudyConfigError as e:
            raise StudyConfigError(f"pruner.configs.wrapped_pruner.{str(e).removeprefix('pruner.')}") from None
        configs.setdefault("patience", 0)
    return _construct("pruner", cls, configs)


def create_or_load_study(
    cfg: StudyConfig,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler | None = None,
    *,
    url: str | optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """Create the study named in ``cfg`` or load it when it exists (safe under concurrency: the
    creation runs under :func:`study_lock` of ``url``, default ``cfg.storage``)."""
    kwargs: dict[str, tp.Any] = {"directions": cfg.directions} if cfg.multi_objective else {"direction": cfg.directions[0]}
    with study_lock(url or cfg.storage, cfg.name):
        study = optuna.create_study(
            storage=storage, sampler=sampler, pruner=cfg.make_pruner(), study_name=cfg.name, load_if_exists=True, **kwargs
        )
        _init_study_attrs(cfg, study)
        _features.init_study(cfg, study)  # enqueue / warm start, once per study (under the lock)
    return study


def _init_study_attrs(cfg: StudyConfig, study: optuna.Study) -> None:
    have = [d.name.lower() for d in study.directions]
    if have != cfg.directions:
        raise StudyConfigError(
            f"{cfg.path}: direction(s): the stored study {cfg.name!r} has {have}, the file says {cfg.directions}"
        )
    if "metrics" not in study.user_attrs:
        study.set_user_attr("metrics", cfg.metrics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(cfg.metrics)


def open_study(cfg: StudyConfig, storage: str | optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Load the existing study of ``cfg`` (never creates one).

    Raises:
        HpoError: when the storage holds no study of that name (the URL is masked).
    """
    url = storage if storage is not None else cfg.storage
    where = mask_url(url) if isinstance(url, str) else type(url).__name__
    if isinstance(url, str):
        expanded = os.path.expandvars(url)
        path = (
            Path(expanded[len("journal:") :])
            if expanded.startswith("journal:")
            else (_sqlite_path(expanded) if "://" in expanded else None)
        )
        if path is not None and not path.is_file():  # do not leave an empty study.db / journal behind
            raise HpoError(
                f"{cfg.path}: no study named {cfg.name!r}: {path} does not exist; run python -m hpo.run --study {cfg.path} first"
            )
    store = make_storage(url)
    try:
        return optuna.load_study(study_name=cfg.name, storage=store, pruner=cfg.make_pruner())
    except KeyError:
        raise HpoError(
            f"{cfg.path}: no study named {cfg.name!r} in {where}; run python -m hpo.run --study {cfg.path} first"
        ) from None


#: The study in which ``python -m hpo.proxy`` records the identity of the storage it proxies.
PROXY_IDENTITY_STUDY = "hpo:storage-identity"


def record_proxied_identity(storage: optuna.storages.BaseStorage, url: str) -> None:
    """Record :func:`storage_identity` of ``url`` in ``storage`` (what ``python -m hpo.proxy``
    serves), so that workers behind any proxy of one database bind the same study folders."""
    try:
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], PROXY_IDENTITY_STUDY)
    except optuna.exceptions.DuplicatedStudyError:
        study_id = storage.get_study_id_from_name(PROXY_IDENTITY_STUDY)
    ident = storage_identity(url)
    if storage.get_study_user_attrs(study_id).get("storage") != ident:
        storage.set_study_user_attr(study_id, "storage", ident)


def proxied_identity(storage: optuna.storages.BaseStorage) -> str | None:
    """The identity recorded by :func:`record_proxied_identity`, or ``None``."""
    try:
        study_id = storage.get_study_id_from_name(PROXY_IDENTITY_STUDY)
    except KeyError:
        return None
    got = storage.get_study_user_attrs(study_id).get("storage")
    return got if isinstance(got, str) else None


def storage_identity(storage: str | optuna.storages.BaseStorage | None) -> str | None:
    """The storage part of a study's identity: the URL without its password, with the file of an
    SQLite or journal storage made absolute, the proxied database's for a ``grpc://`` proxy
    (:func:`record_proxied_identity`) (``None`` for a storage given as an object)."""
    if not isinstance(storage, str):
        return None
    url = os.path.expandvars(storage)
    if url.startswith("grpc://"):
        return proxied_identity(make_storage(url)) or mask_url(url)
    if url.startswith("journal:"):
        return "journal:" + str(Path(url[len("journal:") :]).resolve())
    db = _sqlite_path(url) if "://" in url else None
    if db is not None:
        return "sqlite:///" + str(db.resolve())
    return mask_url(url)


def bind_study_dir(cfg: StudyConfig, study: optuna.Study, storage: str | optuna.storages.BaseStorage | None = None) -> None:
    """Claim ``cfg.study_dir`` for this study (storage + name), or refuse another study's folder.

    Trial folders are ``<output_dir>/<name>/trials/<number>``: two studies with the same name
    and output folder but different storages would overwrite each other's trials (and collation
    would delete the other's weights). The first command that uses the folder records the
    study's identity in ``study-identity.json``; every later one (``hpo.run``, ``hpo.collate``,
    ``hpo.report``, ``hpo.train_best``) must match it. A storage given as an object is not checked.

    Raises:
        StudyConfigError: when the folder belongs to another study (exit status 2).
    """
    where = storage_identity(storage if storage is not None else cfg.storage)
    if where is None:
        return
    ident = {"study": cfg.name, "storage": where, "study_id": int(study._study_id)}
    path = cfg.study_dir / IDENTITY_FILE
    with _file_lock(cfg.study_dir / ".identity.lock"):
        try:
            have = json.loads(path.read_text())
        except FileNotFoundError:
            write_json(path, ident)
            return
        except json.JSONDecodeError as e:
            raise StudyConfigError(
                f"{path}: unreadable ({e}); remove it only if {cfg.study_dir} holds no other study's trials"
            ) from None
    if have != ident:
        raise StudyConfigError(
            f"{cfg.path}: {cfg.study_dir} holds the trials of study {have.get('study')!r} (id {have.get('study_id')}) in "
            f"{have.get('storage')}, not of {cfg.name!r} (id {ident['study_id']}) in {where}; give this study another "
            "output_dir or name so that neither overwrites the other's trials"
        )


def check_search_space(cfg: StudyConfig, study: optuna.Study) -> None:
    """Refuse a study file whose search space differs from the stored study's.

    The reference is the latest COMPLETE or PRUNED trial (one still running may not have
    suggested all its parameters yet): each tuned parameter of the file must have the same
    distribution there, and no parameter of that trial may be missing from the file.
    Otherwise every new trial would fail (a float became categorical) or mix two spaces.

    Raises:
        StudyConfigError: naming each differing parameter, before any trial runs.
    """
    ref = None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
        if t.distributions and (ref is None or t.number > ref.number):
            ref = t
    if ref is None:
        return
    stored = dict(ref.distributions)
    wanted = {p.name: p.distribution() for p in cfg.tune_params if p.state}
    problems = []
    for name in sorted(set(stored) | set(wanted)):
        old, new = stored.get(name), wanted.get(name)
        if old is None:
            problems.append(f"tune_params.{name}: not in the stored study; the file adds {_dist_text(new)}")
        elif new is None:
            problems.append(f"tune_params.{name}: the stored study tunes {_dist_text(old)}; the file does not tune it")
        elif old != new:
            problems.append(f"tune_params.{name}: the stored study has {_dist_text(old)}, the file says {_dist_text(new)}")
    if problems:
        lines = "\n".join(f"  {cfg.path}: {p}" for p in problems)
        raise StudyConfigError(
            f"{cfg.path}: the search space differs from that of study {cfg.name!r} (trial {ref.number}):\n{lines}\n"
            "  use a new study name for a new search space",
            [(p.partition(": ")[0], p.partition(": ")[2]) for p in problems],
        )


def _dist_text(d: tp.Any) -> str:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return f"cat {list(d.choices)}"
    if isinstance(d, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)):
        kind = "int" if isinstance(d, optuna.distributions.IntDistribution) else "float"
        extra = "".join(
            f", {k}={v}"
            for k, v in (("log", d.log), ("step", d.step))
            if v not in (False, None) and not (kind == "int" and k == "step" and v == 1)
        )
        return f"{kind} [{d.low}, {d.high}{extra}]"
    return repr(d)


# ----------------------------------------------------------------------------- study files


def add_override_arguments(parser: argparse.ArgumentParser, *, search: bool = True) -> None:
    """Add ``--set KEY=VALUE`` (study-file overrides) and, with ``search``, ``--sampler`` and ``--pruner`` to ``parser``.

    ``python -m hpo.run`` and ``python -m hpo.launch`` take all three, ``hpo.report`` and
    ``hpo.train_best`` ``--set`` (the same study as the workers ran); :func:`override_list`
    turns the parsed arguments into the ``overrides`` of :func:`load_study_config`.
    """
    if search:
        parser.add_argument(
            "--sampler",
            default=None,
            help="sampler for this run, replacing the file's (e.g. RandomSampler); "
            "its configs via --set sampler.configs.KEY=VALUE",
        )
        parser.add_argument("--pruner", default=None, help="pruner for this run, replacing the file's (e.g. MedianPruner, none)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file key for this run (dotted, YAML value; repeatable), "
        "e.g. --set config.epochs=3 --set tune_params.lr.state=false; validated like the file",
    )


def override_list(args: argparse.Namespace) -> list[str]:
    """The ``KEY=VALUE`` overrides of :func:`add_override_arguments`' arguments (sampler and pruner first)."""
    search = (("sampler", getattr(args, "sampler", None)), ("pruner", getattr(args, "pruner", None)))
    return [*(f"{k}={v}" for k, v in search if v is not None), *args.overrides]


def load_study_config(
    path: str | os.PathLike[str], *, storage: str | None = None, check_trainable: bool = True, overrides: tp.Sequence[str] = ()
) -> StudyConfig:
    """Read and validate a study file; every problem is reported at once.

    Args:
        path: the YAML study file.
        storage: a storage URL that replaces the file's ``storage``.
        check_trainable: also resolve the trainable's base config and dry-check every
            ``tune_params`` path and the edges of its range against it.
        overrides: ``key.path=value`` items applied to the file before validation
            (``--set`` of ``hpo.run``; see :func:`hpo._features.apply_overrides`).

    Raises:
        StudyConfigError: ``"<file>: <key.path>: <problem>"`` for each problem.
    """
    path = Path(path)
    raw = read_mapping(path, StudyConfigError, "study file")
    if overrides:
        try:
            raw = _features.apply_overrides(raw, overrides)
        except StudyConfigError as e:
            raise StudyConfigError(f"{path}: {e}") from None
    errors: list[tuple[str, str]] = []

    def err(key: str, msg: str) -> None:
        errors.append((key, msg))

    if "slurm" in raw and "slurm" not in _SECTIONS:  # slurm validates its own section (lazy: layering)
        with contextlib.suppress(ImportError):
            importlib.import_module("slurm._sbatch")
    for key in raw:
        if key not in STUDY_KEYS and key not in _SECTIONS:
            err(str(key), f"unknown key; valid keys are {', '.join([*STUDY_KEYS, *_SECTIONS])}")
    for key, validator in _SECTIONS.items():
        if key in raw:
            errors += validator(raw[key])

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        err(
            "name",
            f"required: a study name of letters, digits, '.', '_' and '-' that starts with a letter or "
            f"digit (it names the folder <output_dir>/<name>), but got {name!r}",
        )
        name = "study"
    output_dir = raw.get("output_dir", "outputs")
    if not isinstance(output_dir, str):
        err("output_dir", f"must be a folder path, but got {output_dir!r}")
        output_dir = "outputs"
    out = Path(output_dir)

    directions, metrics = _directions(raw, err)
    url = storage or raw.get("storage")
    if url is None:
        url = f"sqlite:///{(out / name / 'study.db').as_posix()}"
    elif not isinstance(url, str) or not (url.startswith("journal:") or "://" in url):
        err(
            "storage",
            f"must be a SQLAlchemy URL (sqlite:///PATH, postgresql+psycopg://...) or journal:PATH, but got {mask_url(str(url))!r}",
        )

    sampler_spec, pruner_spec = raw.get("sampler"), raw.get("pruner")
    try:
        make_sampler(sampler_spec, seed=0, tune_params=None)  # a grid's search space is checked with the features
    except StudyConfigError as e:
        err(*_split_error(str(e)))
    try:
        make_pruner(pruner_spec)
    except StudyConfigError as e:
        err(*_split_error(str(e)))

    schema_errors: list[str] = []
    top = build({k: v for k, v in raw.items() if k in _STUDY_FIELDS}, _StudyFile, schema_errors)
    errors += [_split_error(e) for e in schema_errors]
    n_trials, max_trials, seed, keep = top.n_trials, top.max_trials, top.seed, top.keep_top_k
    timeout = top.timeout
    quick = raw.get("quick_scan", False)
    if quick is True:
        quick = 256
    if quick not in (False, None) and (isinstance(quick, bool) or not isinstance(quick, int) or quick < 1):
        err("quick_scan", f"must be false or a positive number of training samples, but got {quick!r}")
        quick = None
    flags = {"collate_results": top.collate_results, "append_params": top.append_params}
    train_best: dict[str, tp.Any] = raw["train_best"] if isinstance(raw.get("train_best"), dict) else {}

    params, space_errors = parse_tune_params(raw.get("tune_params"))
    errors += space_errors
    if "tune_params" not in raw:
        err("tune_params", "required: at least one parameter to tune")
    features = _features.check_features(raw, params, err)
    if features.constraints and isinstance(sampler_spec, (str, dict)):
        with contextlib.suppress(StudyConfigError, KeyError, TypeError):
            cls = _resolve_name(
                "sampler",
                sampler_spec if isinstance(sampler_spec, str) else sampler_spec["name"],
                SAMPLERS,
                _SAMPLER_ALIASES,
                "hpo.samplers",
            )
            if "constraints_func" not in inspect.signature(cls).parameters:
                _LOG.warning("%s: constraints are recorded per trial, but %s does not use them to sample", path, cls.__name__)

    trainable_name = raw.get("trainable", "fspnet")
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        err("config", f"must be a mapping of config keys, but got {type(config).__name__}")
        config = {}
    config_file = raw.get("config_file")
    cfile: Path | None = None
    if config_file is not None:
        if not isinstance(config_file, str):
            err("config_file", f"must be a file path, but got {config_file!r}")
        else:
            cfile = Path(config_file)
            if not cfile.is_file() and (path.parent / cfile).is_file():
                cfile = path.parent / cfile
            if not cfile.is_file():
                err("config_file", f"file not found: {config_file}")
                cfile = None
    base_config: dict[str, tp.Any] = {}
    if check_trainable and not any(k in ("trainable", "config", "config_file") for k, _ in errors):
        base_config = _check_trainable(trainable_name, config, cfile, params, quick, err, metrics)
    scratch = top.scratch or ScratchSection()
    if scratch.enabled and base_config:
        from hpo.trainables import get_trainable

        errors += check_stage_keys(scratch, base_config, get_trainable(trainable_name).has_path)

    if errors:
        lines = "\n".join(f"  {path}: {k}: {m}" for k, m in errors)
        where = f"the study file with --set {' '.join(overrides)}" if overrides else "the study file"
        raise StudyConfigError(f"{path}: {len(errors)} error(s) in {where}:\n{lines}", errors)
    return StudyConfig(
        path=path,
        name=name,
        output_dir=out,
        storage=url,
        directions=directions,
        metrics=metrics,
        sampler=_normalise_spec(sampler_spec, "TPESampler"),
        pruner=_normalise_spec(pruner_spec, "HyperbandPruner"),
        n_trials=n_trials,
        max_trials=max_trials if max_trials is not None else features.grid_size,
        timeout=None if timeout is None else float(timeout),
        seed=seed,
        trainable=trainable_name,
        config_file=cfile,
        base_config=base_config,
        quick_scan=quick or None,
        tune_params=params,
        collate_results=flags["collate_results"],
        append_params=flags["append_params"],
        keep_top_k=keep,
        train_best=train_best,
        raw=raw,
        features=features,
        scratch=scratch,
    )


def _normalise_spec(spec: tp.Any, default: str) -> dict[str, tp.Any]:
    if spec is None:
        return {"name": default, "configs": {}}
    if isinstance(spec, str):
        return {"name": spec, "configs": {}}
    return {"name": spec["name"], "configs": copy.deepcopy(spec.get("configs") or {})}


def _split_error(msg: str) -> tuple[str, str]:
    key, _, rest = msg.partition(": ")
    return key, rest


def _directions(raw: dict[str, tp.Any], err: tp.Callable[[str, str], None]) -> tuple[list[str], list[str]]:
    if "direction" in raw and "directions" in raw:
        err("directions", "give either direction or directions, not both")
    dirs = raw.get("directions", [raw.get("direction", "minimize")])
    key = "directions" if "directions" in raw else "direction"
    if not isinstance(dirs, list) or not dirs:
        err(key, f"must be a non-empty list of minimize/maximize, but got {dirs!r}")
        dirs = ["minimize"]
    for i, d in enumerate(dirs):
        if d not in ("minimize", "maximize"):
            err(key if key == "direction" else f"{key}.{i}", f"unknown {d!r}; choose one of minimize, maximize")
    metrics = raw.get("metrics", [raw.get("metric", "val_loss")])
    mkey = "metrics" if "metrics" in raw else "metric"
    if "metric" in raw and "metrics" in raw:
        err("metrics", "give either metric or metrics, not both")
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
        err(mkey, f"must be a metric name (or a list of them for metrics), but got {metrics!r}")
        metrics = ["val_loss"] * len(dirs)
    if len(metrics) != len(dirs):
        err(mkey, f"{len(metrics)} metric(s) for {len(dirs)} direction(s); give one metric per direction")
    return [d if d in ("minimize", "maximize") else "minimize" for d in dirs], list(metrics)


def _check_trainable(
    name: tp.Any,
    config: dict[str, tp.Any],
    cfile: Path | None,
    params: list[TuneParam],
    quick: tp.Any,
    err: tp.Callable[[str, str], None],
    metrics: tp.Sequence[str] = (),
) -> dict[str, tp.Any]:
    from hpo.trainables import get_trainable

    try:
        trainable = get_trainable(name)
    except HpoError as e:
        err("trainable", str(e))
        return {}
    try:
        base = trainable.load_config(config, cfile)
    except (HpoError, ValueError, KeyError, TypeError) as e:
        for line in _error_lines(e):
            err("config", line)
        return {}
    for p in params:
        if not trainable.has_path(base, p.path):
            err(f"tune_params.{p.name}.path", f"{p.path!r} is not a key of the {trainable.name} config")
        elif p.state:
            for value in p.extremes():
                try:
                    trainable.check_config(apply_params(base, [p], {p.name: value}))
                except (HpoError, ValueError, KeyError, TypeError) as e:
                    err(f"tune_params.{p.name}.kwargs", f"value {value!r} makes an invalid config: {' '.join(_error_lines(e))}")
                    break
    for metric in metrics:
        scaled = set(trainable.metric_weights(base, metric))
        for p in params:
            if p.state and p.path in scaled:
                err(
                    "metric",
                    f"{metric!r} is scaled by the tuned {p.path} (tune_params.{p.name}): trials with other weights are "
                    f"not comparable and the study drives the weight to its bound; optimise a metric it does not "
                    f"scale (e.g. val_latent_loss or val_recon_loss) or fix the weight",
                )
    if quick:
        try:
            trainable.check_config(trainable.quick_scan(base, int(quick)))
        except (HpoError, ValueError, KeyError, TypeError) as e:
            err("quick_scan", " ".join(_error_lines(e)))
    return base


def _error_lines(e: BaseException) -> list[str]:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # Multi-line errors from config checkers start with a summary line; keep the details.
    return lines[1:] if len(lines) > 1 else lines or [type(e).__name__]
