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
import importlib
import inspect
import logging
import os
import typing as tp
import warnings
from pathlib import Path

import optuna

from fspnet._io import read_mapping
from hpo._plugins import load_entry_points
from hpo.errors import HpoError, StudyConfigError
from hpo.space import TuneParam, apply_params, parse_tune_params

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "STUDY_KEYS",
    "StudyConfig",
    "create_or_load_study",
    "load_study_config",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "mask_url",
    "open_study",
    "register_section",
]

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
    "BruteForceSampler": optuna.samplers.BruteForceSampler,
}
_SAMPLER_ALIASES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
                    "qmc": "QMCSampler", "nsgaii": "NSGAIISampler", "nsgaiii": "NSGAIIISampler",
                    "bruteforce": "BruteForceSampler"}

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
_PRUNER_ALIASES = {"hyperband": "HyperbandPruner", "median": "MedianPruner", "successive_halving": "SuccessiveHalvingPruner",
                   "patient": "PatientPruner", "percentile": "PercentilePruner", "threshold": "ThresholdPruner",
                   "wilcoxon": "WilcoxonPruner", "none": "NopPruner", "nop": "NopPruner"}

#: Top-level keys of a study file and what they hold.
STUDY_KEYS: dict[str, str] = {
    "name": "study name (required)",
    "output_dir": "folder for <name>/trials, collated, report.html (default outputs)",
    "storage": "SQLAlchemy URL, journal:PATH, or null for sqlite in <output_dir>/<name>/study.db",
    "direction": "minimize or maximize",
    "directions": "list of directions (multi-objective)",
    "metric": "metric the trainable reports, e.g. val_loss",
    "metrics": "list of metrics (multi-objective), one per direction",
    "sampler": "{name, configs}: an Optuna sampler class name",
    "pruner": "{name, configs}: an Optuna pruner class name or none (default HyperbandPruner)",
    "n_trials": "trials per process when --n-trials is not given",
    "max_trials": "study-wide cap on the number of trials (all states), shared by every worker",
    "timeout": "seconds per process",
    "seed": "base seed of samplers and trainables",
    "trainable": "fspnet, mlp, or module:function",
    "config_file": "the trainable's base config file (YAML/JSON)",
    "config": "overrides of the trainable's base config (nested or dotted keys)",
    "quick_scan": "false, or the number of training samples for a fast debug study",
    "tune_params": "{name: {state, suggest: int|float|cat, kwargs, path}}",
    "collate_results": "copy plots and top-k weights into <output_dir>/<name>/collated",
    "append_params": "append name=value pairs to collated file names",
    "keep_top_k": "weights of the best k trials kept in collated/",
    "train_best": "{seeds, config}: final training of the best params",
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
        return make_sampler(self.sampler, seed=worker_seed)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner)


# ----------------------------------------------------------------------------- factories


def mask_url(url: str | None) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to print or log)."""
    if not url:
        return str(url)
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: hide everything between :// and @
        head, _, rest = url.partition("://")
        return f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


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
            no server), ``sqlite:///PATH`` (local disk; WAL journal and a 60 s busy timeout so
            many workers do not see "database is locked") or any other SQLAlchemy URL such as
            ``postgresql+psycopg2://user:pass@host/db`` (pool pre-ping, a small pool per worker).
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
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise HpoError(f"storage {mask_url(url)!r}: expected a SQLAlchemy URL (sqlite:///PATH, postgresql+psycopg2://...) or journal:PATH")
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
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **rdb_kwargs)
    except HpoError:
        raise
    except Exception as e:
        msg = str(e).replace(url, mask_url(url))
        raise HpoError(f"storage {mask_url(url)}: cannot open ({type(e).__name__}: {msg.splitlines()[0] if msg else ''})") from None


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
        raise StudyConfigError(f"{kind}.name: required, a class name such as {'TPESampler' if kind == 'sampler' else 'HyperbandPruner'}")
    if not isinstance(configs, dict):
        raise StudyConfigError(f"{kind}.configs: must be a mapping of keyword arguments, but got {type(configs).__name__}")
    return name, dict(configs)


def _construct(kind: str, cls: type, configs: dict[str, tp.Any]) -> tp.Any:
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p != "self" and params[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    for key in configs:
        if key not in valid:
            raise StudyConfigError(f"{kind}.configs.{key}: unknown argument of {cls.__name__}; valid are {', '.join(valid)}")
    try:
        return cls(**configs)
    except (TypeError, ValueError) as e:
        raise StudyConfigError(f"{kind}.configs: {cls.__name__} rejects them: {e}") from None


def make_sampler(spec: tp.Any = None, *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Build a sampler from ``None`` (TPE), a class name, ``{name, configs}`` or an instance.

    ``seed`` is passed when the sampler takes one and ``configs`` does not set it.

    Raises:
        StudyConfigError: naming ``sampler.name`` or ``sampler.configs.<key>``.
    """
    if isinstance(spec, optuna.samplers.BaseSampler):
        return spec
    name, configs = ("TPESampler", {}) if spec is None else _split_spec("sampler", spec)
    cls = _resolve_name("sampler", name, SAMPLERS, _SAMPLER_ALIASES, "hpo.samplers")
    if seed is not None and "seed" in inspect.signature(cls.__init__).parameters and "seed" not in configs:
        configs["seed"] = seed
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


def create_or_load_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the study named in ``cfg`` or load it when it exists (safe under concurrency)."""
    kwargs: dict[str, tp.Any] = {"directions": cfg.directions} if cfg.multi_objective else {"direction": cfg.directions[0]}
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=cfg.make_pruner(), study_name=cfg.name,
                                load_if_exists=True, **kwargs)
    have = [d.name.lower() for d in study.directions]
    if have != cfg.directions:
        raise StudyConfigError(f"{cfg.path}: direction(s): the stored study {cfg.name!r} has {have}, the file says {cfg.directions}")
    if "metrics" not in study.user_attrs:
        study.set_user_attr("metrics", cfg.metrics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(cfg.metrics)
    return study


def open_study(cfg: StudyConfig, storage: str | optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Load the existing study of ``cfg`` (never creates one).

    Raises:
        HpoError: when the storage holds no study of that name (the URL is masked).
    """
    url = storage if storage is not None else cfg.storage
    store = make_storage(url)
    try:
        return optuna.load_study(study_name=cfg.name, storage=store, pruner=cfg.make_pruner())
    except KeyError:
        where = mask_url(url) if isinstance(url, str) else type(url).__name__
        raise HpoError(f"{cfg.path}: no study named {cfg.name!r} in {where}; run python -m hpo.run --study {cfg.path} first") from None


# ----------------------------------------------------------------------------- study files


def load_study_config(path: str | os.PathLike[str], *, storage: str | None = None, check_trainable: bool = True) -> StudyConfig:
    """Read and validate a study file; every problem is reported at once.

    Args:
        path: the YAML study file.
        storage: a storage URL that replaces the file's ``storage``.
        check_trainable: also resolve the trainable's base config and dry-check every
            ``tune_params`` path and the edges of its range against it.

    Raises:
        StudyConfigError: ``"<file>: <key.path>: <problem>"`` for each problem.
    """
    path = Path(path)
    raw = read_mapping(path, StudyConfigError, "study file")
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
    if not isinstance(name, str) or not name.strip() or "/" in name:
        err("name", f"required: a study name without '/', but got {name!r}")
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
        err("storage", f"must be a SQLAlchemy URL (sqlite:///PATH, postgresql+psycopg2://...) or journal:PATH, but got {mask_url(str(url))!r}")

    sampler_spec, pruner_spec = raw.get("sampler"), raw.get("pruner")
    try:
        make_sampler(sampler_spec, seed=0)
    except StudyConfigError as e:
        err(*_split_error(str(e)))
    try:
        make_pruner(pruner_spec)
    except StudyConfigError as e:
        err(*_split_error(str(e)))

    n_trials = _int_or_none(raw, "n_trials", err, low=1)
    max_trials = _int_or_none(raw, "max_trials", err, low=1)
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        err("timeout", f"must be a positive number of seconds or null, but got {timeout!r}")
        timeout = None
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        err("seed", f"must be an integer, but got {seed!r}")
        seed = 0
    quick = raw.get("quick_scan", False)
    if quick is True:
        quick = 256
    if quick not in (False, None) and (isinstance(quick, bool) or not isinstance(quick, int) or quick < 1):
        err("quick_scan", f"must be false or a positive number of training samples, but got {quick!r}")
        quick = None
    flags = {}
    for key, default in (("collate_results", True), ("append_params", True)):
        flags[key] = raw.get(key, default)
        if not isinstance(flags[key], bool):
            err(key, f"must be true or false, but got {flags[key]!r}")
    keep = raw.get("keep_top_k", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        err("keep_top_k", f"must be an integer >= 0, but got {keep!r}")
        keep = 3
    train_best = raw.get("train_best") or {}
    if not isinstance(train_best, dict):
        err("train_best", "must be a mapping {seeds, config}")
        train_best = {}
    for key in train_best:
        if key not in ("seeds", "config"):
            err(f"train_best.{key}", "unknown key; valid keys are seeds, config")
    if "seeds" in train_best and (isinstance(train_best["seeds"], bool) or not isinstance(train_best["seeds"], int) or train_best["seeds"] < 1):
        err("train_best.seeds", f"must be an integer >= 1, but got {train_best['seeds']!r}")
    if not isinstance(train_best.get("config", {}), dict):
        err("train_best.config", "must be a mapping of config overrides")

    params, space_errors = parse_tune_params(raw.get("tune_params"))
    errors += space_errors
    if "tune_params" not in raw:
        err("tune_params", "required: at least one parameter to tune")

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
        base_config = _check_trainable(trainable_name, config, cfile, params, quick, err)

    if errors:
        lines = "\n".join(f"  {path}: {k}: {m}" for k, m in errors)
        raise StudyConfigError(f"{path}: {len(errors)} error(s) in the study file:\n{lines}", errors)
    return StudyConfig(
        path=path, name=name, output_dir=out, storage=url, directions=directions, metrics=metrics,
        sampler=_normalise_spec(sampler_spec, "TPESampler"), pruner=_normalise_spec(pruner_spec, "HyperbandPruner"),
        n_trials=n_trials, max_trials=max_trials, timeout=None if timeout is None else float(timeout), seed=seed,
        trainable=trainable_name, config_file=cfile, base_config=base_config, quick_scan=quick or None,
        tune_params=params, collate_results=flags["collate_results"], append_params=flags["append_params"],
        keep_top_k=keep, train_best=train_best, raw=raw,
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


def _int_or_none(raw: dict[str, tp.Any], key: str, err: tp.Callable[[str, str], None], low: int) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        err(key, f"must be an integer >= {low} or null, but got {v!r}")
        return None
    return v


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


def _check_trainable(name: tp.Any, config: dict[str, tp.Any], cfile: Path | None, params: list[TuneParam],
                     quick: tp.Any, err: tp.Callable[[str, str], None]) -> dict[str, tp.Any]:
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


