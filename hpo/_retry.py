"""Riding out a database server that restarts: the one retry policy for storage calls.

A worker's every storage call (ask, tell, ``set_user_attr``, ``report``, heartbeats, the
server locks, reaping) may hit a PostgreSQL/MySQL server that is restarting or that dropped its
connection. :func:`call_with_retry` retries such *transient* failures (:func:`is_transient`)
with a jittered exponential back-off for at most :attr:`RetryPolicy.total_s` seconds
(``HPO_STORAGE_RETRY_S``, default 60), then re-raises. :class:`RetryingRDBStorage` applies it
to every method of Optuna's :class:`~optuna.storages.RDBStorage`, taking care that a call whose
commit went through before its connection died is not applied twice:

* ``set_trial_state_values`` (``tell``): before a retry the trial's state is read; a trial
  already in the requested finished state counts as told.
* ``create_new_study``: a retry that finds the study created returns its id.
* ``create_new_trial`` (``ask``): a trial created by an attempt whose answer was lost is never
  returned; it stays RUNNING without an owner, so the heartbeat reaper fails and retries it
  after its grace (``hpo._heartbeat``). Likewise a WAITING trial taken by such an attempt.
* every other write is an upsert (attributes, intermediate values, parameters), safe to repeat.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import threading
import time
import typing as tp

import optuna
from optuna.trial import TrialState

__all__ = ["RETRY_ENV", "RetryPolicy", "RetryingRDBStorage", "call_with_retry", "is_transient"]

_LOG = logging.getLogger(__name__)

#: Environment variable: seconds a storage call keeps retrying a transient failure (default 60).
RETRY_ENV = "HPO_STORAGE_RETRY_S"

T = tp.TypeVar("T")

#: Per thread: inside a retried storage call (so nested calls are not retried twice over).
_NESTED = threading.local()

#: Lower-case fragments of the messages of connection failures (PostgreSQL, MySQL, SQLite, drivers).
_MARKERS = (
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "connection refused",
    "could not connect to server",
    "connection is closed",
    "connection already closed",
    "ssl connection has been closed unexpectedly",
    "consuming input failed",
    "no connection to the server",
    "connection reset by peer",
    "broken pipe",
    "lost connection to mysql server",
    "mysql server has gone away",
    "database is locked",
)
#: ... and of failures that no retry mends (a wrong password, database or role), even from a driver.
_PERMANENT = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "access denied for user",
    "does not exist",
    "unknown database",
)
#: Modules of the server drivers whose OperationalError / InterfaceError is a connection problem.
_SERVER_DRIVERS = ("psycopg", "psycopg2", "pymysql", "MySQLdb", "mysql", "asyncpg", "pg8000")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a transient storage failure is retried.

    Args:
        total_s: give up (re-raise) once this many seconds of retrying have passed.
        first_s: the first back-off; each next one doubles, up to ``max_s``, each times a random
            factor in [1, 2) so that many workers do not reconnect in lock-step.
        max_s: the longest single back-off.
    """

    total_s: float = 60.0
    first_s: float = 0.25
    max_s: float = 8.0

    @classmethod
    def from_env(cls, environ: tp.Mapping[str, str] | None = None) -> RetryPolicy:
        """The default policy with ``total_s`` from ``HPO_STORAGE_RETRY_S`` when set."""
        env = os.environ if environ is None else environ
        raw = env.get(RETRY_ENV)
        if raw is None or raw == "":
            return cls()
        try:
            total = float(raw)
        except ValueError:
            raise ValueError(f"{RETRY_ENV} must be a number of seconds >= 0, but got {raw!r}") from None
        if total < 0:
            raise ValueError(f"{RETRY_ENV} must be a number of seconds >= 0, but got {raw!r}")
        return cls(total_s=total)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) is a lost or refused connection.

    Covers SQLAlchemy's ``DisconnectionError`` and invalidated connections, ``OperationalError`` /
    ``InterfaceError`` of a server driver (psycopg, psycopg2, MySQL drivers), the same wrapped in
    Optuna's ``StorageInternalError``, and the messages of a server restart ("the database system
    is shutting down", "terminating connection due to administrator command", ...).
    """
    import sqlalchemy.exc

    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        text = str(e).lower()
        if any(m in text for m in _PERMANENT):
            return False
        if isinstance(e, sqlalchemy.exc.DisconnectionError):
            return True
        if isinstance(e, sqlalchemy.exc.DBAPIError):
            if e.connection_invalidated:
                return True
            if isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) and _from_server_driver(e.orig):
                return True
        elif type(e).__name__ in ("OperationalError", "InterfaceError") and _from_server_driver(e):
            return True  # a driver's own exception, not wrapped by SQLAlchemy
        if any(m in text for m in _MARKERS):
            return True
        stack += [e.__cause__, e.__context__]
    return False


def _from_server_driver(e: BaseException | None) -> bool:
    return e is not None and type(e).__module__.split(".")[0] in _SERVER_DRIVERS


def call_with_retry(
    fn: tp.Callable[[], T],
    what: str,
    *,
    transient: tp.Callable[[BaseException], bool] = is_transient,
    policy: RetryPolicy | None = None,
    sleep: tp.Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried while it raises a ``transient`` error, for at most ``policy.total_s`` s.

    Args:
        fn: the call; it must be safe to repeat after a failure (see the module docstring).
        what: names the call in the log, e.g. ``"storage postgresql://u:***@h/db: set_trial_user_attr"``.
        transient: which errors to retry (default :func:`is_transient`); others propagate at once.
        policy: the back-off (default :meth:`RetryPolicy.from_env`).
        sleep: ``time.sleep`` (tests pass a fake clock).

    Raises:
        The last error when it is not transient or the time is up.
    """
    policy = policy or RetryPolicy.from_env()
    start = time.monotonic()
    delay = policy.first_s
    attempt = 0
    while True:
        attempt += 1
        try:
            result = fn()
        except Exception as e:
            waited = time.monotonic() - start
            if not transient(e):
                if attempt > 1:
                    _LOG.info("%s: attempt %d after lost connections ended with %s", what, attempt, _short(e))
                raise
            if waited >= policy.total_s:
                _LOG.error("%s: giving up after %d attempts in %.1f s (%s)", what, attempt, waited, _short(e))
                raise
            pause = min(delay * (1.0 + random.random()), policy.max_s, max(0.0, policy.total_s - waited))
            _LOG.warning("%s: %s; retry %d in %.1f s", what, _short(e), attempt, pause)
            sleep(pause)
            delay = min(2 * delay, policy.max_s)
            continue
        if attempt > 1:
            _LOG.info("%s: succeeded at attempt %d after %.1f s", what, attempt, time.monotonic() - start)
        return result


def _short(e: BaseException) -> str:
    from runtools.provenance import mask_secrets

    root = e
    while root.__cause__ is not None:  # Optuna's StorageInternalError hides the driver's message
        root = root.__cause__
    lines = str(root).strip().splitlines()
    via = f"{type(e).__name__} from " if root is not e else ""
    return f"{via}{type(root).__name__}: {mask_secrets(lines[0]) if lines else ''}"


#: RDBStorage methods that are safe to repeat as they are (reads, upserts), public ones and the
#: private ones that Optuna's cache layer (``_CachedStorage``) calls directly.
_REPEATABLE = (
    "_get_trials",
    "_get_best_trial_id",
    "_set_trial_param",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "set_trial_param",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    "get_n_trials",
    "record_heartbeat",
    "fail_stale_trials",
    "_get_stale_trial_ids",
)


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """:class:`~optuna.storages.RDBStorage` whose calls ride out a restarting database server.

    Every public method retries transient connection failures under one :class:`RetryPolicy`
    (see the module docstring for the calls that must not be applied twice). Optuna still wraps
    it in its cache layer like any ``RDBStorage``.

    Args:
        url: the SQLAlchemy URL.
        retry_policy: the back-off (default :meth:`RetryPolicy.from_env`).
        **kwargs: passed to :class:`~optuna.storages.RDBStorage`.
    """

    def __init__(self, url: str, *, retry_policy: RetryPolicy | None = None, **kwargs: tp.Any) -> None:
        self.retry_policy = retry_policy or RetryPolicy.from_env()
        super().__init__(url, **kwargs)

    def _what(self, method: str) -> str:
        from runtools.provenance import mask_url

        return f"storage {mask_url(str(self.url))}: {method}"

    def _retry(self, fn: tp.Callable[[], T], method: str) -> T:
        if getattr(_NESTED, "active", False):  # a retried method calling another: retry the outer only
            return fn()
        _NESTED.active = True
        try:
            return call_with_retry(fn, self._what(method), policy=self.retry_policy)
        finally:
            _NESTED.active = False

    def create_new_study(self, directions: tp.Sequence[optuna.study.StudyDirection], study_name: str | None = None) -> int:
        tried = False

        def attempt() -> int:
            nonlocal tried
            try:
                return optuna.storages.RDBStorage.create_new_study(self, directions, study_name)
            except optuna.exceptions.DuplicatedStudyError:
                if tried and study_name is not None:  # an earlier attempt created it, then lost the answer
                    return self.get_study_id_from_name(study_name)
                raise
            finally:
                tried = True

        return self._retry(attempt, "create_new_study")

    def _create_new_trial(
        self, study_id: int, template_trial: optuna.trial.FrozenTrial | None = None
    ) -> optuna.trial.FrozenTrial:
        # ``create_new_trial`` and the cache layer both come here. A trial created by an attempt
        # whose answer was lost stays RUNNING without an owner; the reaper fails and retries it.
        return self._retry(
            lambda: optuna.storages.RDBStorage._create_new_trial(self, study_id, template_trial), "create_new_trial"
        )

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: tp.Sequence[float] | None = None) -> bool:
        failed = False

        def attempt() -> bool:
            nonlocal failed
            if failed and state.is_finished():
                current = optuna.storages.RDBStorage.get_trial(self, trial_id)
                if current.state == state:  # the failed attempt had committed: told once, not twice
                    _LOG.info("trial id %d already %s after a lost connection; not told again", trial_id, state.name)
                    return True
            try:
                return optuna.storages.RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except Exception:
                failed = True
                raise

        return self._retry(attempt, "set_trial_state_values")


def _repeatable(name: str) -> tp.Callable[..., tp.Any]:
    base = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(base)
    def method(self: RetryingRDBStorage, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        return self._retry(lambda: base(self, *args, **kwargs), name)

    return method


for _name in _REPEATABLE:
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(RetryingRDBStorage, _name, _repeatable(_name))
del _name
