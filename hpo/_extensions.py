"""Extension points for launchers: worker set-up and study maintenance.

:mod:`hpo` knows nothing of Slurm. Modules that add fault tolerance (``hpo._heartbeat``,
``hpo._preempt``, owned by the Slurm side) register here at import time:

* ``register_worker_setup(fn)``: ``fn(worker)`` runs when a :class:`hpo.run.Worker` is made;
  it may append to ``worker.hooks`` (per-epoch heartbeats, checkpoint requests) and
  ``worker.trial_sources`` (resume a requeued trial, retry a dead worker's trial) and set
  ``worker.leave_running_on_exit``.
* ``register_maintenance(fn)``: ``fn(cfg, study)`` runs before :func:`hpo.collate.collate`
  and :func:`hpo.report.report` read the study (e.g. fail stale RUNNING trials).

Those modules are imported lazily when present, so nothing else needs to import them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import typing as tp

_LOG = logging.getLogger(__name__)

WORKER_SETUP: list[tp.Callable[[tp.Any], None]] = []
MAINTENANCE: list[tp.Callable[[tp.Any, tp.Any], None]] = []
#: Modules imported by :func:`load_extensions` when they exist.
EXTENSION_MODULES = ("hpo._heartbeat", "hpo._preempt")


def register_worker_setup(fn: tp.Callable[[tp.Any], None]) -> tp.Callable[[tp.Any], None]:
    """Run ``fn(worker)`` for every new worker (usable as a decorator)."""
    if fn not in WORKER_SETUP:
        WORKER_SETUP.append(fn)
    return fn


def register_maintenance(fn: tp.Callable[[tp.Any, tp.Any], None]) -> tp.Callable[[tp.Any, tp.Any], None]:
    """Run ``fn(cfg, study)`` before collation and reports (usable as a decorator)."""
    if fn not in MAINTENANCE:
        MAINTENANCE.append(fn)
    return fn


def load_extensions() -> None:
    """Import the extension modules that exist; a broken one is logged and skipped."""
    for name in EXTENSION_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except Exception as e:  # an extension must not stop the study
            _LOG.warning("skipping extension %s: %s: %s", name, type(e).__name__, e)


def run_maintenance(cfg: tp.Any, study: tp.Any) -> None:
    """Run every registered maintenance function; failures are logged."""
    load_extensions()
    for fn in MAINTENANCE:
        try:
            fn(cfg, study)
        except Exception as e:
            _LOG.warning("maintenance %s failed: %s: %s", getattr(fn, "__name__", fn), type(e).__name__, e)


def setup_worker(worker: tp.Any) -> None:
    """Apply every registered worker set-up to ``worker``."""
    load_extensions()
    for fn in WORKER_SETUP:
        fn(worker)
