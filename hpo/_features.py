"""Study-file features around Optuna: grid search, enqueued and warm-started trials, constraints,
retries of trials that raise, and command-line overrides of a study file.

The study file gains these sections (all optional)::

    sampler: {name: GridSampler}            # grid from the cat/int/stepped-float choices of tune_params
    enqueue: [{lr: 0.01, momentum: 0.9}]    # known-good params, tried first, once per study
    warm_start: {study: old, storage: sqlite:///old.db, top_k: 5}   # enqueue another study's best
    constraints: [{metric: n_weights, max: 100000}]   # recorded per trial, honoured by TPE/NSGA/GP
    max_retries: 2                          # a trial whose training raises is retried with its params
    artifacts: true                         # plots + best weights as Optuna artifacts (hpo._artifacts)
    tracking: {mlflow: {}}                  # experiment trackers (hpo.tracking)

:func:`check_features` validates them with the rest of the file (:func:`hpo.study.load_study_config`);
:func:`init_study` enqueues once per study, under the study lock; :class:`hpo._feature_hook.FeatureHook`
records constraints and retries during the trials. This module imports nothing from
:mod:`hpo.study` at import time (that module imports this one).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import typing as tp

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import StudyConfigError
from hpo.space import TuneParam
from runtools import schema
from runtools.schema import get_path, set_path

if tp.TYPE_CHECKING:
    from hpo.study import StudyConfig

__all__ = [
    "CONSTRAINTS_ATTR",
    "ENQUEUED_KEY",
    "FEATURE_KEYS",
    "BruteForceSampler",
    "Features",
    "GridSampler",
    "apply_overrides",
    "check_features",
    "constraints_func",
    "grid_search_space",
    "init_study",
]

_LOG = logging.getLogger(__name__)

#: Top-level study-file keys handled here, and what they hold.
FEATURE_KEYS: dict[str, str] = {
    "enqueue": "list of {param: value} tried first, once per study (e.g. known-good defaults)",
    "warm_start": "{study, storage (default: this study's), top_k (default 5)}: enqueue another study's best params",
    "constraints": "list of {metric, max and/or min}: recorded per trial, honoured by TPE/NSGA-II/NSGA-III/GP",
    "max_retries": "retries (same params) of a trial whose training raises (default 0; not pruned or bad configs)",
    "artifacts": "true: register each trial's plots and best weights as Optuna artifacts (<study>/artifacts) for optuna-dashboard",
    "tracking": "{mlflow: {...}, tensorboard: {...}, wandb: {mode: offline}}: experiment trackers (off by default)",
}
#: Study system attribute recording that the study file's enqueue / warm start was done.
ENQUEUED_KEY = "hpo:enqueued"
#: Trial user attribute: constraint values (<= 0 is feasible), read by :func:`constraints_func`.
CONSTRAINTS_ATTR = "constraints"
#: Optuna >= 5 records constraints per trial (``Trial.set_constraint``) and deprecates ``constraints_func``.
NATIVE_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")
#: Largest grid :func:`grid_search_space` derives for one parameter.
_MAX_GRID_VALUES = 10_000


@dataclasses.dataclass
class Features:
    """The validated feature sections of a study file (see the module docstring)."""

    enqueue: list[dict[str, tp.Any]] = dataclasses.field(default_factory=list)
    warm_start: dict[str, tp.Any] | None = None
    constraints: list[dict[str, tp.Any]] = dataclasses.field(default_factory=list)
    max_retries: int = 0
    #: Register plots and best weights through ``optuna.artifacts`` (see :mod:`hpo._artifacts`).
    artifacts: bool = False
    #: The ``tracking:`` section (see :mod:`hpo.tracking`), ``None`` when off.
    tracking: dict[str, tp.Any] | None = None
    #: Number of points of a GridSampler/BruteForceSampler space (the default ``max_trials``).
    grid_size: int | None = None


# ----------------------------------------------------------------------------- grid samplers


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's :class:`~optuna.samplers.GridSampler` for ask-and-tell workers.

    Optuna's version calls ``study.stop()`` when the grid is exhausted, which raises outside
    ``study.optimize``; here the study-wide ``max_trials`` (the grid's size by default) ends it.
    """

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: tp.Sequence[float] | None) -> None:
        _ignore_stop(super().after_trial, study, trial, state, values)


class BruteForceSampler(optuna.samplers.BruteForceSampler):
    """Optuna's :class:`~optuna.samplers.BruteForceSampler` for ask-and-tell workers (see :class:`GridSampler`)."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: tp.Sequence[float] | None) -> None:
        _ignore_stop(super().after_trial, study, trial, state, values)


def _ignore_stop(after_trial: tp.Callable[..., None], *args: tp.Any) -> None:
    try:
        after_trial(*args)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def _param_grid(p: TuneParam) -> list[tp.Any] | str:
    """The values of ``p`` as a list, or why it has none (a float without ``step``)."""
    kw = p.kwargs
    if p.suggest == "cat":
        return list(kw["choices"])
    if p.suggest == "int":
        low, high, step = int(kw["low"]), int(kw["high"]), int(kw.get("step", 1))
        n = (high - low) // step + 1
        if n > _MAX_GRID_VALUES:
            return f"int [{low}, {high}] has {n} values (more than {_MAX_GRID_VALUES})"
        return list(range(low, high + 1, step))
    if kw.get("step") is None:
        return f"float [{kw['low']}, {kw['high']}] has no step"
    flow, fhigh, fstep = float(kw["low"]), float(kw["high"]), float(kw["step"])
    n = math.floor((fhigh - flow) / fstep + 1e-9) + 1
    if n > _MAX_GRID_VALUES:
        return f"float [{flow}, {fhigh}, step={fstep}] has {n} values (more than {_MAX_GRID_VALUES})"
    return [round(flow + i * fstep, 12) for i in range(n)]


def grid_search_space(
    configs: dict[str, tp.Any], tune_params: tp.Sequence[TuneParam], kind: str = "GridSampler"
) -> dict[str, list[tp.Any]]:
    """The grid of a study: ``configs['search_space']`` where given, else each tuned parameter's
    choices (cat), every value (int) or every step (float with ``step``).

    Raises:
        StudyConfigError: naming ``sampler.configs.search_space.<name>`` for a parameter with
            no grid (a float without step), a grid value outside the parameter's range, or an
            unknown parameter.
    """
    tuned = {p.name: p for p in tune_params if p.state}
    explicit = configs.get("search_space") or {}
    if not isinstance(explicit, dict):
        raise StudyConfigError(
            f"sampler.configs.search_space: must be a mapping {{param: [values]}}, but got {type(explicit).__name__}"
        )
    space: dict[str, list[tp.Any]] = {}
    problems: list[str] = []
    for name, values in explicit.items():
        where = f"sampler.configs.search_space.{name}"
        if name not in tuned:
            problems.append(f"{where}: not a tuned parameter; tuned are {', '.join(tuned) or 'none'}")
        elif not isinstance(values, list) or not values:
            problems.append(f"{where}: must be a non-empty list of values, but got {values!r}")
        else:
            dist = tuned[name].distribution()
            bad = [v for v in values if not _contains(dist, v)]
            if bad:
                problems.append(f"{where}: {bad!r} outside tune_params.{name} ({tuned[name].suggest} {tuned[name].kwargs})")
            space[name] = list(values)
    for name, p in tuned.items():
        if name in space or name in explicit:
            continue
        grid = _param_grid(p)
        if isinstance(grid, str):
            problems.append(
                f"sampler.configs.search_space.{name}: {kind} needs a finite set of values, but tune_params.{name} "
                f"is a {grid}; give kwargs.step or list the values here"
            )
        else:
            space[name] = grid
    if problems:
        raise StudyConfigError(problems[0] + "".join(f"\n  {m}" for m in problems[1:]))
    return space


def make_grid_sampler(cls: type, configs: dict[str, tp.Any], tune_params: tp.Sequence[TuneParam] | None) -> dict[str, tp.Any]:
    """The ``configs`` of a grid/brute-force sampler class, with the derived ``search_space``
    (GridSampler) or checked to be finite (BruteForceSampler)."""
    configs = dict(configs)
    if tune_params is None:  # validation of the name and configs only, or an explicit search_space
        if issubclass(cls, optuna.samplers.GridSampler):
            configs.setdefault("search_space", {})
        return configs
    if issubclass(cls, optuna.samplers.GridSampler):
        configs["search_space"] = grid_search_space(configs, tune_params)
    else:
        grid_search_space({}, tune_params, kind=cls.__name__)
    return configs


def grid_size(sampler: dict[str, tp.Any], tune_params: tp.Sequence[TuneParam]) -> int | None:
    """Points of the grid of a GridSampler/BruteForceSampler spec; ``None`` for other samplers."""
    name = str(sampler.get("name", ""))
    if name.lower() in ("gridsampler", "grid"):
        space = grid_search_space(sampler.get("configs") or {}, tune_params)
    elif name.lower() in ("bruteforcesampler", "bruteforce"):
        space = grid_search_space({}, tune_params, kind="BruteForceSampler")
    else:
        return None
    return math.prod(len(v) for v in space.values())


# ----------------------------------------------------------------------------- validation
# The fixed-key sections are runtools.schema dataclasses; enqueue's keys are the tuned parameters.


def _storage_url(v: tp.Any) -> str | None:
    ok = v.startswith("journal:") or "://" in v
    return None if ok else f"must be a SQLAlchemy URL or journal:PATH (default: this study's storage), but got {v!r}"


@dataclasses.dataclass
class _WarmStart:
    study: str | None = schema.field(None, None, "the study whose best trials are enqueued (required)")
    storage: str | None = schema.field(None, _storage_url, "its storage URL (default: this study's)")
    top_k: int = schema.field(5, schema.at_least(1), "how many of its best trials")


@dataclasses.dataclass
class _Constraint:
    metric: str | None = schema.field(None, None, "a metric the trainable reports, e.g. n_weights (required)")
    max: float | None = schema.field(None, None, "feasible when metric <= max")
    min: float | None = schema.field(None, None, "feasible when metric >= min")


@dataclasses.dataclass
class _Scalars:
    max_retries: int = schema.field(0, schema.at_least(0), FEATURE_KEYS["max_retries"])
    artifacts: bool = schema.field(False, None, FEATURE_KEYS["artifacts"])


_S = tp.TypeVar("_S")


def _build(data: dict[str, tp.Any], cls: type[_S], path: str, err: tp.Callable[[str, str], None]) -> _S | None:
    """``data`` as the schema ``cls`` (:func:`runtools.schema.build`); its problems go to ``err``; None if any."""
    errors: list[str] = []
    value = schema.build(data, cls, errors, path)
    for e in errors:
        key, _, message = e.partition(": ")
        err(key, message)
    return None if errors else value


def _contains(dist: optuna.distributions.BaseDistribution, value: tp.Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def check_features(raw: dict[str, tp.Any], tune_params: tp.Sequence[TuneParam], err: tp.Callable[[str, str], None]) -> Features:
    """Validate the feature sections of a study file; problems go to ``err(key_path, message)``."""
    f = Features()
    tuned = {p.name: p for p in tune_params if p.state}

    enqueue = raw.get("enqueue") or []
    if not isinstance(enqueue, list):
        err("enqueue", f"must be a list of {{param: value}} mappings, but got {type(enqueue).__name__}")
        enqueue = []
    for i, params in enumerate(enqueue):
        if not isinstance(params, dict) or not params:
            err(f"enqueue.{i}", f"must be a non-empty mapping {{param: value}}, but got {params!r}")
            continue
        ok = True
        for name, value in params.items():
            if name not in tuned:
                err(f"enqueue.{i}.{name}", f"not a tuned parameter; tuned are {', '.join(tuned) or 'none'}")
                ok = False
            elif not _contains(tuned[name].distribution(), value):
                err(
                    f"enqueue.{i}.{name}", f"{value!r} is outside tune_params.{name} ({tuned[name].suggest} {tuned[name].kwargs})"
                )
                ok = False
        if ok:
            f.enqueue.append(dict(params))

    warm = raw.get("warm_start")
    if warm is not None:
        if not isinstance(warm, dict):
            err("warm_start", f"must be a mapping {{study, storage, top_k}}, but got {type(warm).__name__}")
        else:
            ws = _build(warm, _WarmStart, "warm_start", err)
            if warm.get("study") in ("", None):
                err("warm_start.study", f"required: the name of the study to start from, but got {warm.get('study')!r}")
            elif ws is not None:
                f.warm_start = dataclasses.asdict(ws)

    constraints = raw.get("constraints") or []
    if not isinstance(constraints, list):
        err("constraints", f"must be a list of {{metric, max, min}} mappings, but got {type(constraints).__name__}")
        constraints = []
    for i, c in enumerate(constraints):
        where = f"constraints.{i}"
        if not isinstance(c, dict):
            err(where, f"must be a mapping {{metric, max and/or min}}, but got {c!r}")
            continue
        ok = _build(c, _Constraint, where, err) is not None
        if c.get("metric") in ("", None):
            err(f"{where}.metric", f"required: a metric the trainable reports, e.g. n_weights, but got {c.get('metric')!r}")
            ok = False
        if c.get("max") is None and c.get("min") is None:
            err(where, "give max and/or min")
            ok = False
        if ok:
            f.constraints.append({k: v for k, v in c.items() if v is not None})  # as written: they name the constraints

    scalars = _build({k: raw[k] for k in ("max_retries", "artifacts") if k in raw}, _Scalars, "", err)
    if scalars is not None:
        f.max_retries, f.artifacts = scalars.max_retries, scalars.artifacts

    if raw.get("tracking") is not None:
        from hpo.tracking import check_tracking

        problems = check_tracking(raw["tracking"])
        for key, msg in problems:
            err(key, msg)
        if not problems:
            f.tracking = {k: v for k, v in raw["tracking"].items() if v not in (False, None)} or None

    sampler = raw.get("sampler")
    spec = {"name": sampler} if isinstance(sampler, str) else sampler
    if isinstance(spec, dict) and isinstance(spec.get("configs") or {}, dict):
        try:
            f.grid_size = grid_size(spec, tune_params)
        except StudyConfigError as e:
            key, _, msg = str(e).partition(": ")
            err(key, msg)
    return f


# ----------------------------------------------------------------------------- constraints


def constraint_values(constraints: tp.Sequence[dict[str, tp.Any]], metrics: tp.Mapping[str, tp.Any]) -> list[float]:
    """Optuna constraint values (``<= 0`` feasible) of ``metrics``; a missing or non-finite
    metric counts as violated (``inf``)."""
    out: list[float] = []
    for c in constraints:
        try:
            v = float(metrics[c["metric"]])
        except (KeyError, TypeError, ValueError):
            v = math.nan
        for key, sign in (("max", 1.0), ("min", -1.0)):
            if key in c:
                out.append(sign * (v - float(c[key])) if math.isfinite(v) else math.inf)
    return out


def constraint_keys(constraints: tp.Sequence[dict[str, tp.Any]]) -> list[str]:
    """Names of the values of :func:`constraint_values`: ``<metric><=<max>``, ``<metric>>=<min>``."""
    return [f"{c['metric']}{op}{c[key]}" for c in constraints for key, op in (("max", "<="), ("min", ">=")) if key in c]


def feasible(trial: FrozenTrial) -> bool:
    """Whether every constraint recorded for ``trial`` holds (``<= 0``); a trial without any does."""
    values = trial.user_attrs.get(CONSTRAINTS_ATTR) or []
    return all(float(v) <= 0 for v in values)


def constraints_func(trial: FrozenTrial) -> list[float]:
    """``constraints_func`` of the samplers: the trial's recorded :data:`CONSTRAINTS_ATTR`."""
    values = trial.user_attrs.get(CONSTRAINTS_ATTR)
    if values is None:
        raise ValueError(f"trial {trial.number}: no {CONSTRAINTS_ATTR!r} user attribute (recorded by hpo's FeatureHook)")
    return [float(v) for v in values]


# ----------------------------------------------------------------------------- enqueue / warm start


def init_study(cfg: StudyConfig, study: optuna.Study) -> None:
    """Enqueue the study file's ``enqueue`` and ``warm_start`` trials, once per study.

    The caller holds :func:`hpo.study.study_lock`; the study system attribute
    :data:`ENQUEUED_KEY` records that it was done, so the many workers of a study enqueue once.

    Raises:
        StudyConfigError: when the warm-start study does not exist.
    """
    f: Features = cfg.features
    if not f.enqueue and f.warm_start is None:
        return
    if ENQUEUED_KEY in study._storage.get_study_system_attrs(study._study_id):
        return
    for i, params in enumerate(f.enqueue):
        study.enqueue_trial(params, user_attrs={"enqueued": f"{cfg.path.name}:enqueue.{i}"})
    warm: list[int] = []
    if f.warm_start is not None:
        for number, params in _warm_start_params(cfg, f.warm_start):
            study.enqueue_trial(params, user_attrs={"enqueued": f"warm_start:{f.warm_start['study']}#{number}"})
            warm.append(number)
    study._storage.set_study_system_attr(study._study_id, ENQUEUED_KEY, {"enqueue": len(f.enqueue), "warm_start": warm})
    _LOG.info("study %s: enqueued %d trial(s) from the study file and %d from warm_start", cfg.name, len(f.enqueue), len(warm))


def _warm_start_params(cfg: StudyConfig, warm: dict[str, tp.Any]) -> list[tuple[int, dict[str, tp.Any]]]:
    from hpo.study import make_storage, mask_url

    url = warm["storage"] or cfg.storage
    try:
        source = optuna.load_study(study_name=warm["study"], storage=make_storage(url))
    except KeyError:
        raise StudyConfigError(f"{cfg.path}: warm_start.study: no study {warm['study']!r} in {mask_url(url)}") from None
    done = source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(source.directions) > 1:
        best = source.best_trials
    else:
        sign = 1.0 if source.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
        best = sorted(done, key=lambda t: sign * tp.cast(float, t.value))
    tuned = {p.name: p.distribution() for p in cfg.tune_params if p.state}
    out: list[tuple[int, dict[str, tp.Any]]] = []
    seen: list[dict[str, tp.Any]] = []
    for t in best:
        params = {k: v for k, v in t.params.items() if k in tuned and _contains(tuned[k], v)}
        if params and params not in seen:
            seen.append(params)
            out.append((t.number, params))
        if len(out) == warm["top_k"]:
            break
    if not out:
        _LOG.warning(
            "%s: warm_start: study %r has no completed trial with parameters of this search space", cfg.path, warm["study"]
        )
    return out


# ----------------------------------------------------------------------------- overrides


def apply_overrides(raw: dict[str, tp.Any], overrides: tp.Sequence[str]) -> dict[str, tp.Any]:
    """Return a copy of the study file ``raw`` with ``key.path=value`` overrides applied in order.

    Values are YAML (``--set n_trials=8``, ``--set sampler.configs.multivariate=true``); a dotted
    key creates missing mappings. The result is validated like the file itself.

    Raises:
        StudyConfigError: naming ``--set <key>`` when an override is malformed or crosses a value
            that is not a mapping.
    """
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise StudyConfigError(f"--set {item!r}: expected key.path=value, e.g. --set sampler.configs.n_startup_trials=5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise StudyConfigError(f"--set {key}: the value {text!r} is not valid YAML ({str(e).splitlines()[0]})") from None
        parts = key.split(".")
        if len(parts) > 1 and parts[0] in ("sampler", "pruner") and isinstance(out.get(parts[0]), str):
            out[parts[0]] = {"name": out[parts[0]]}  # `sampler: tpe` then --set sampler.configs.x=1
        for depth in range(1, len(parts)):
            where = ".".join(parts[:depth])
            nxt = get_path(out, where, None)
            if nxt is None:
                break  # set_path creates the rest
            if not isinstance(nxt, (dict, list)):
                raise StudyConfigError(f"--set {key}: {where} is {nxt!r}, not a mapping; set {where}=... instead")
        try:
            set_path(out, key, value)
        except (KeyError, TypeError, IndexError) as e:
            raise StudyConfigError(f"--set {key}: {e.args[0] if e.args else e}") from None
        if parts[0] == "config" and len(parts) > 2:
            out["config"].pop(".".join(parts[1:]), None)  # a dotted key of the file for the same setting
    return out
