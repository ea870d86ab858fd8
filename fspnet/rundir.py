"""The run directory: its file names, how they are written and how they are read back.

One module owns the format. :func:`fspnet.train.train` writes a run directory through
:class:`RunDir`; :func:`load_run` reads one back for prediction and evaluation. A run
directory holds:

=======================  =====================================================================
``config.json``          the resolved training config
``run.json``             the manifest: run id, stage, input/output shapes, parameter names,
                         energy grid, and the SHA-256 of each file written when the run began
``network.json``         the network config the model was built from
``transforms.json``      spectrum and parameter transforms (fitted on the training split)
``splits.json``          training / validation rows of the dataset file
``best.safetensors``     weights with the best validation loss (metadata: the run id)
``last.pt``              last checkpoint: state dicts, counters, history, RNG states and, after
                         an interruption, the position inside the epoch
                         (``torch.load(..., weights_only=True)``)
``metrics.csv/.json``    metrics per epoch
``provenance.json``      seed, git commit, packages, host, Slurm ids, GPU
``loss_curve.png``       loss per epoch
``reconstruction.png``   validation spectra against their reconstructions
``decoder.safetensors``  (encoder runs) a copy of the frozen decoder, with
``decoder_network.json``  its network config, so the run directory stands alone
``ensemble.json``        (an ensemble, :func:`write_ensemble`) the members' weight files and run
``member-K.safetensors`` ids: ``best.safetensors`` first, then the best weights of other trainings
                         of the same network; :func:`load_run` averages their outputs
=======================  =====================================================================

Nothing changes in a run directory until a new run has been built and validated
(:meth:`RunDir.start`); a directory that already holds results is refused unless the run
resumes it or ``overwrite`` is given, and then the old files are moved aside into
``previous/<time>/`` first. :func:`load_run` refuses a directory whose files come from
different runs: each file written at the start is checked against the digest in ``run.json``
and ``best.safetensors`` against the run id.

Example:
    >>> from fspnet.rundir import load_run
    >>> run = load_run("runs/encoder")  # doctest: +SKIP
    >>> run.stage, run.param_names  # doctest: +SKIP
    ('encoder', ['nh', 'gamma', 'fsc', 'kt_max', 'norm'])
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import pickle
import re
import typing as tp
import uuid
import zipfile
from pathlib import Path

import numpy as np

from fspnet.errors import ConfigError, DataError
from runtools.io import atomic_path, write_json, write_text

if tp.TYPE_CHECKING:
    import torch
    from torch import nn

    from fspnet.data import Split, Transforms
    from fspnet.nets import Ensemble, Network

__all__ = [
    "BEST",
    "CHECKPOINT",
    "CONFIG",
    "DECODER",
    "DECODER_NETWORK",
    "ENSEMBLE",
    "LOSS_CURVE",
    "METRICS_CSV",
    "METRICS_JSON",
    "NETWORK",
    "PROVENANCE",
    "RECONSTRUCTION",
    "RUN_FILES",
    "RUN_INFO",
    "RUN_KEYS",
    "SPLITS",
    "TRANSFORMS",
    "Run",
    "RunDir",
    "hyperparams_config",
    "load_run",
    "read_hyperparams",
    "write_ensemble",
]

log = logging.getLogger("fspnet.rundir")

CONFIG = "config.json"
RUN_INFO = "run.json"
NETWORK = "network.json"
TRANSFORMS = "transforms.json"
SPLITS = "splits.json"
BEST = "best.safetensors"
CHECKPOINT = "last.pt"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
PROVENANCE = "provenance.json"
LOSS_CURVE = "loss_curve.png"
RECONSTRUCTION = "reconstruction.png"
DECODER = "decoder.safetensors"
DECODER_NETWORK = "decoder_network.json"
ENSEMBLE = "ensemble.json"
#: Weight files of an ensemble's members after the first (``best.safetensors``).
MEMBER_WEIGHTS = re.compile(r"member-[0-9]+\.safetensors")

#: Every file the trainer writes into a run directory.
RUN_FILES = (
    CONFIG, RUN_INFO, NETWORK, TRANSFORMS, SPLITS, BEST, CHECKPOINT, METRICS_CSV, METRICS_JSON,
    PROVENANCE, LOSS_CURVE, RECONSTRUCTION, DECODER, DECODER_NETWORK,
)  # fmt: skip
#: Files that mean a directory holds the results of a run (refused without resume/overwrite).
RESULT_FILES = (BEST, CHECKPOINT, METRICS_JSON, METRICS_CSV)
#: Where replaced runs go, inside the run directory.
PREVIOUS = "previous"


class RunDir:
    """Write one run directory: the files of a new (or resumed) run, weights, checkpoints, metrics.

    Args:
        path: the run directory (made on :meth:`start`, not before).

    Example:
        >>> rd = RunDir("runs/decoder")  # doctest: +SKIP
        >>> rd.check_can_start(overwrite=False)  # raises ConfigError if it holds results
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        self.run_id: str | None = None

    # -- state of the folder ---------------------------------------------------------------

    def has_checkpoint(self) -> bool:
        """Whether ``last.pt`` exists (a run to resume)."""
        return (self.path / CHECKPOINT).is_file()

    def results(self) -> list[str]:
        """Names of the result files present (``best.safetensors``, ``last.pt``, metrics)."""
        return [name for name in RESULT_FILES if (self.path / name).is_file()]

    def check_can_start(self, *, overwrite: bool) -> None:
        """Refuse to start a new run over the results of an earlier one unless ``overwrite``.

        Raises:
            ConfigError: naming the directory and its result files.
        """
        found = self.results()
        if found and not overwrite:
            raise ConfigError(
                f"run_dir: {self.path} holds the results of an earlier run ({', '.join(found)}); "
                "resume it (--resume / resume: true), choose another run_dir, or replace it "
                "(--overwrite / overwrite: true; the old files are moved to "
                f"{self.path / PREVIOUS}/)"
            )

    # -- starting and resuming ------------------------------------------------------------

    def start(
        self,
        *,
        config: dict[str, tp.Any],
        info: dict[str, tp.Any],
        network: dict[str, tp.Any],
        transforms: Transforms,
        split: Split,
        decoder: nn.Module | None = None,
        decoder_network: dict[str, tp.Any] | None = None,
    ) -> str:
        """Begin a new run: move an earlier run's files aside, then write the run's files.

        Call only once everything is built and validated, so a run that cannot start leaves
        the directory as it was. ``run.json`` (with the digest of every file written here) is
        written last.

        Args:
            config: the resolved training config (``config.json``).
            info: stage, shapes, parameter names, energy grid (``run.json``).
            network: the network config (``network.json``).
            transforms: the fitted transforms (``transforms.json``).
            split: training / validation rows (``splits.json``).
            decoder: an encoder run's frozen decoder (``decoder.safetensors``).
            decoder_network: its network config (``decoder_network.json``).

        Returns:
            The new run id.
        """
        from safetensors.torch import save_file

        self.path.mkdir(parents=True, exist_ok=True)
        self._move_aside()
        self.run_id = uuid.uuid4().hex
        write_json(self.path / NETWORK, network)
        transforms.save(self.path / TRANSFORMS)
        split.save(self.path / SPLITS)
        written = [NETWORK, TRANSFORMS, SPLITS]
        if decoder is not None:
            with atomic_path(self.path / DECODER) as tmp:
                save_file(_cpu_state(decoder), str(tmp), metadata={"run_id": self.run_id})
            write_json(self.path / DECODER_NETWORK, decoder_network)
            written += [DECODER, DECODER_NETWORK]
        self._write_config_and_manifest(config, info, written)
        return self.run_id

    def resume(self, config: dict[str, tp.Any]) -> None:
        """Continue the run in this directory: record the (possibly changed) config.

        Raises:
            DataError: when the directory mixes files of different runs.
        """
        info = _read_info(self.path)
        _check_consistent(self.path, info, check_best=True)
        self.run_id = info.get("run_id")
        files = list(info.get("files", {}))
        base = {k: v for k, v in info.items() if k not in ("run_id", "files")}
        if self.run_id is None:  # written before run ids: keep it as it is
            write_json(self.path / CONFIG, config)
            return
        self._write_config_and_manifest(config, base, [f for f in files if f != CONFIG])

    def _write_config_and_manifest(self, config: dict[str, tp.Any], info: dict[str, tp.Any], written: list[str]) -> None:
        write_json(self.path / CONFIG, config)
        files = {name: _sha256(self.path / name) for name in [*written, CONFIG]}
        write_json(self.path / RUN_INFO, {**info, "run_id": self.run_id, "files": files})

    def _move_aside(self) -> None:
        present = [name for name in RUN_FILES if (self.path / name).is_file()]
        if not present:
            return
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path / PREVIOUS / stamp
        target.mkdir(parents=True)
        for name in present:
            os.replace(self.path / name, target / name)
        log.warning("%s: the earlier run's files were moved to %s", self.path, target)

    # -- during the run --------------------------------------------------------------------

    def save_best(self, model: nn.Module) -> None:
        """Write ``best.safetensors`` atomically, tagged with the run id."""
        from safetensors.torch import save_file

        meta = {"run_id": self.run_id} if self.run_id else None
        with atomic_path(self.path / BEST) as tmp:
            save_file(_cpu_state(model), str(tmp), metadata=meta)

    def load_best(self, device: str | torch.device) -> dict[str, torch.Tensor]:
        """The weights of ``best.safetensors`` on ``device``."""
        from safetensors.torch import load_file

        return load_file(str(self.path / BEST), device=str(device))

    def save_checkpoint(self, ckpt: dict[str, tp.Any]) -> None:
        """Write ``last.pt`` atomically (plain containers and tensors only), with the run id."""
        import torch

        with atomic_path(self.path / CHECKPOINT) as tmp:
            torch.save({**ckpt, "run_id": self.run_id}, tmp)

    def load_checkpoint(self, required: tp.Iterable[str] = ()) -> dict[str, tp.Any]:
        """Read ``last.pt`` with ``weights_only=True`` (nothing but tensors and plain containers).

        Args:
            required: top-level keys the checkpoint must hold.

        Raises:
            DataError: naming the file when it is truncated, corrupt, holds anything but plain
                data, lacks a required key or belongs to another run.
        """
        return load_checkpoint(self.path / CHECKPOINT, required=required, run_id=self._run_id_on_disk())

    def _run_id_on_disk(self) -> str | None:
        if not (self.path / RUN_INFO).is_file():
            return None
        return _read_info(self.path).get("run_id")

    def write_metrics(self, history: list[dict[str, float]], best_epoch: int) -> None:
        """Write ``metrics.csv`` and ``metrics.json`` (``{"best_epoch", "best", "history"}``)."""
        import csv
        import io

        keys: list[str] = []
        for h in history:
            keys += [k for k in h if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.path / METRICS_CSV, buf.getvalue())
        best = next((h for h in history if h["epoch"] == best_epoch), None)
        write_json(self.path / METRICS_JSON, {"best_epoch": best_epoch, "best": best, "history": history})

    def read_provenance(self) -> dict[str, tp.Any] | None:
        """The provenance of the run so far, or None when absent or unreadable."""
        try:
            data = json.loads((self.path / PROVENANCE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def write_provenance(self, prov: dict[str, tp.Any]) -> None:
        """Write ``provenance.json``."""
        write_json(self.path / PROVENANCE, prov)


def load_checkpoint(
    path: str | os.PathLike[str], *, required: tp.Iterable[str] = (), run_id: str | None = None
) -> dict[str, tp.Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)`` and clear errors.

    Args:
        path: the ``last.pt`` file.
        required: top-level keys it must hold.
        run_id: when given, the checkpoint's ``run_id`` must match (a checkpoint of another run).

    Raises:
        DataError: naming ``path``: unreadable, truncated, refused by the safe loader (it holds
            code or arbitrary objects), or not a checkpoint of this run.
    """
    import torch

    path = Path(path)
    hint = "delete it to start again, or restore it from a backup"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # the loader refused an object; its own text advises weights_only=False, which would
        # run whatever the file holds: name the object instead and never suggest that
        found = re.search(r"GLOBAL ([\w.]+)", str(e)) or re.search(r"Unsupported operand \S+", str(e))
        what = f" (it names {found.group(1)})" if found and found.groups() else f" ({found.group(0)})" if found else ""
        raise DataError(
            f"{path}: refused to load: the checkpoint holds objects other than tensors and plain "
            f"containers{what}, so it was not written by fspnet or was tampered with; {hint}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError, IndexError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot read the checkpoint; it is truncated or corrupt ({reason}); {hint}") from None
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: not a checkpoint (a {type(ckpt).__name__}, expected a mapping); {hint}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise DataError(f"{path}: not a checkpoint of this trainer (missing {', '.join(missing)}); {hint}")
    if run_id is not None and ckpt.get("run_id") not in (None, run_id):
        raise DataError(
            f"{path}: belongs to run {ckpt.get('run_id')}, but {path.parent / RUN_INFO} is run {run_id}; "
            "the directory mixes two runs"
        )
    return ckpt


# --------------------------------------------------------------------------------------------
# reading a run directory back


@dataclasses.dataclass
class Run:
    """A trained network read back from a run directory (see the module docstring).

    Attributes:
        path: the run directory.
        stage: ``"decoder"`` or ``"encoder"``.
        network: the model with its best weights, in eval mode (an :class:`~fspnet.nets.Ensemble`
            of the members' when the directory holds ``ensemble.json``).
        transforms: the fitted transforms.
        input_shape: the network input shape without the batch dimension.
        param_names: parameter names.
        energy_centres: [C] bin centres in keV (None if unknown).
        config: the training config (empty if the folder has none).
        decoder: for an encoder run, the frozen decoder (None if absent).
    """

    path: Path
    stage: str
    network: Network | Ensemble
    transforms: Transforms
    input_shape: tuple[int, ...]
    param_names: list[str]
    energy_centres: np.ndarray | None
    config: dict[str, tp.Any]
    decoder: Network | None = None


def load_run(run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> Run:
    """Read a run directory (or a folder of shipped weights laid out the same way).

    Needs ``run.json``, ``network.json``, ``best.safetensors`` and ``transforms.json``; an
    encoder run's ``decoder.safetensors`` + ``decoder_network.json`` are loaded when present,
    and an ensemble's members (``ensemble.json``) into one :class:`~fspnet.nets.Ensemble`.
    Nothing is unpickled.

    Raises:
        DataError: naming the missing or malformed file, or the file that belongs to another
            run than ``run.json`` (a directory mixing two runs is never used).
    """
    from safetensors.torch import load_file

    from fspnet.data import load_transforms
    from fspnet.nets import build_network

    path = Path(os.fspath(run_dir))
    for name in (RUN_INFO, NETWORK, BEST, TRANSFORMS):
        if not (path / name).is_file():
            raise DataError(f"{path}: not a run directory; {name} is missing")
    info = _read_info(path)
    try:
        input_shape = tuple(int(i) for i in info["input_shape"])
        stage = str(info["stage"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path / RUN_INFO}: malformed ({e})") from None
    _check_consistent(path, info, check_best=True)
    members = _ensemble_members(path, info) if (path / ENSEMBLE).is_file() else [BEST]
    nets = []
    for name in members:
        net = build_network(str(path / NETWORK), input_shape).to(device)
        net.load_state_dict(_load_weights(path / name, load_file, device))
        nets.append(net.eval())
    network: Network | Ensemble = nets[0] if len(nets) == 1 else _ensemble(nets)
    decoder = None
    if (path / DECODER).is_file() and (path / DECODER_NETWORK).is_file():
        decoder = build_network(str(path / DECODER_NETWORK), tuple(info["output_shape"])).to(device)
        decoder.load_state_dict(_load_weights(path / DECODER, load_file, device))
        decoder.eval()
    config: dict[str, tp.Any] = {}
    if (path / CONFIG).is_file():
        try:
            config = json.loads((path / CONFIG).read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path / CONFIG}: not valid JSON ({e})") from None
    centres = info.get("energy_centres")
    return Run(
        path=path,
        stage=stage,
        network=network,
        transforms=load_transforms(path / TRANSFORMS),
        input_shape=input_shape,
        param_names=list(info.get("param_names", [])),
        energy_centres=None if centres is None else np.asarray(centres),
        config=config,
        decoder=decoder,
    )


def _load_weights(path: Path, load_file: tp.Callable[..., tp.Any], device: tp.Any) -> tp.Any:
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise DataError(f"{path}: cannot read the weights ({e})") from None


def _ensemble(nets: list[Network]) -> Ensemble:
    from fspnet.nets import Ensemble

    return Ensemble(nets).eval()


def _ensemble_members(path: Path, info: dict[str, tp.Any]) -> list[str]:
    """The weight files listed by ``ensemble.json``, each checked to hold its member's run id."""
    where = path / ENSEMBLE
    try:
        members = json.loads(where.read_text())["members"]
        names = [str(m["weights"]) for m in members]
        ids = [m.get("run_id") for m in members]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{where}: malformed ({e}); expected {{'members': [{{'weights': ..., 'run_id': ...}}, ...]}}") from None
    if len(names) < 2 or names[0] != BEST or ids[0] != info.get("run_id"):
        raise DataError(f"{where}: the first of two or more members must be this run's {BEST} (run {info.get('run_id')})")
    for name, run_id in zip(names[1:], ids[1:], strict=True):
        if not MEMBER_WEIGHTS.fullmatch(name) or not (path / name).is_file():
            raise DataError(f"{where}: member {name!r} is not a member-K.safetensors file in {path}")
        if _safetensors_run_id(path / name) != run_id:
            raise DataError(f"{path / name}: not the weights of run {run_id} that {where} lists; the ensemble mixes files")
    return names


def write_ensemble(
    target: str | os.PathLike[str], first: str | os.PathLike[str], others: tp.Sequence[str | os.PathLike[str]]
) -> list[str]:
    """Make ``target`` (a copy of run directory ``first``) an ensemble of ``first`` and ``others``.

    Each of ``others`` must be a training of the same network on the same data: the same stage,
    network file, transforms, shapes, parameter names and (encoders) frozen decoder as ``first``,
    else averaging their outputs means nothing. Their ``best.safetensors`` are copied in as
    ``member-1.safetensors``, ... and ``ensemble.json`` lists every member's weights and run id
    (``best.safetensors``, ``first``'s, leads).

    Returns:
        The names of the files written into ``target``.

    Raises:
        DataError: naming the member that differs from ``first``, or a run that is an ensemble.
    """
    target, runs = Path(target), [Path(first), *(Path(o) for o in others)]
    loaded = [load_run(r) for r in runs]
    ref = loaded[0]
    for src, run in zip(runs, loaded, strict=True):
        if (src / ENSEMBLE).is_file():
            raise DataError(f"{src}: already an ensemble; list its member runs instead")
        differs = [
            what
            for what, same in (
                ("stage", run.stage == ref.stage),
                ("network file", run.network.config == ref.network.config),
                ("shapes", run.input_shape == ref.input_shape and run.network.output_shape == ref.network.output_shape),
                ("parameter names", run.param_names == ref.param_names),
                ("transforms", json.loads((src / TRANSFORMS).read_text()) == json.loads((runs[0] / TRANSFORMS).read_text())),
                ("frozen decoder", _same_state(run.decoder, ref.decoder)),
            )
            if not same
        ]
        if differs:
            raise DataError(f"{src}: cannot join the ensemble of {runs[0]}: its {', '.join(differs)} differ")
    members = [{"weights": BEST, "run_id": _read_info(runs[0]).get("run_id"), "run_dir": str(runs[0])}]
    written = []
    for k, src in enumerate(runs[1:], start=1):
        name = f"member-{k}.safetensors"
        with atomic_path(target / name) as tmp:
            tmp.write_bytes((src / BEST).read_bytes())
        members.append({"weights": name, "run_id": _read_info(src).get("run_id"), "run_dir": str(src)})
        written.append(name)
    write_json(target / ENSEMBLE, {"reduce": "mean", "members": members})
    return [*written, ENSEMBLE]


def _same_state(a: nn.Module | None, b: nn.Module | None) -> bool:
    import torch

    if a is None or b is None:
        return a is b
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _read_info(path: Path) -> dict[str, tp.Any]:
    try:
        info = json.loads((path / RUN_INFO).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path / RUN_INFO}: malformed ({e})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path / RUN_INFO}: malformed (expected a mapping)")
    return info


def _check_consistent(path: Path, info: dict[str, tp.Any], *, check_best: bool) -> None:
    """Raise DataError when a file present in ``path`` was not written by the run of ``run.json``."""
    run_id = info.get("run_id")
    has_best = check_best and (path / BEST).is_file()
    best_id = _safetensors_run_id(path / BEST) if has_best else None
    if run_id is None:
        if best_id is not None:
            raise DataError(
                f"{path / BEST}: written by run {best_id}, but {path / RUN_INFO} predates run ids; "
                "the directory mixes two runs: retrain it"
            )
        return  # a directory written before run ids (or shipped weights laid out the same way)
    files = info.get("files")
    if not isinstance(files, dict):
        raise DataError(f"{path / RUN_INFO}: malformed ('files' must map file names to digests)")
    for name, digest in files.items():
        if (path / name).is_file() and _sha256(path / name) != digest:
            raise DataError(
                f"{path / name}: does not belong to run {run_id} of {path / RUN_INFO} (its content "
                "changed since the run began); the directory mixes files of different runs: retrain it "
                "or restore the file"
            )
    if has_best and best_id != run_id:
        raise DataError(
            f"{path / BEST}: written by run {best_id or '(no run id)'}, but {path / RUN_INFO} is run {run_id}; "
            "the directory mixes files of different runs: retrain it or restore the file"
        )


def _safetensors_run_id(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # a corrupt header
        raise DataError(f"{path}: cannot read the weights ({e})") from None
    return meta.get("run_id")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# hyperparameter files


#: Keys that say how to run, not what to train: a trial's values are not carried over by
#: :func:`hyperparams_config` and setting them never contradicts the trial.
RUN_KEYS = ("run_dir", "resume", "overwrite", "training.progress")


def _read_hyperparams_file(p: Path) -> dict[str, tp.Any]:
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: hyperparameter file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of dotted config paths to values")
    return data


def _is_best_params(data: dict[str, tp.Any]) -> bool:
    return isinstance(data.get("params"), dict) and isinstance(data.get("paths"), dict)


def read_hyperparams(path: str | os.PathLike[str]) -> dict[str, tp.Any]:
    """Read dotted-path overrides from JSON: ``{"training.learning_rate": 1e-3, ...}``.

    A hyperparameter file in the ``{"params": {name: value}, "paths": {name: dotted.path}}``
    form (what :mod:`hpo` writes as ``best_params.json``) is accepted too: each value goes to
    its name's path (params without a path are skipped with a warning). Only the tuned values
    come back; :func:`hyperparams_config` trains the trial's whole config.

    Raises:
        ConfigError: naming the file when it is missing or not such a mapping.
    """
    p = Path(path)
    data = _read_hyperparams_file(p)
    if _is_best_params(data):
        missing = [k for k in data["params"] if k not in data["paths"]]
        if missing:
            log.warning("%s: params %s have no config path in 'paths'; ignoring them", p, missing)
        return {data["paths"][k]: v for k, v in data["params"].items() if k in data["paths"]}
    return data


def hyperparams_config(
    path: str | os.PathLike[str],
    config_file: str | os.PathLike[str] | None = None,
    overrides: tp.Mapping[str, tp.Any] | None = None,
    *,
    override: bool = False,
) -> dict[str, tp.Any]:
    """The resolved trainer config of ``fspnet.train --hyperparams path``.

    When ``path`` is an :mod:`hpo` ``best_params.json`` that carries its trial's whole
    ``config``, that config is the one trained, seed included, so the network, data and
    schedule are the trial's; only :data:`RUN_KEYS` (run directory, resume, overwrite,
    progress bar) are not carried over. A value of ``config_file`` (YAML) or ``overrides``
    (dotted keys, e.g. from ``--set``) that differs from the trial's is refused, naming each
    key, unless ``override`` is true, which applies it and logs each key it overrides. A file
    of dotted keys, or a ``best_params.json`` without ``config``, gives only the tuned values:
    they are applied over ``config_file`` as before, with a warning for the latter.

    Args:
        path: the hyperparameter JSON.
        config_file: a trainer YAML (``--config``).
        overrides: dotted-path values (``--set``, ``--stage``, ``--run-dir``, ...).
        override: let ``config_file`` and ``overrides`` change the trial's values.

    Returns:
        The plain, validated config dict (:func:`fspnet.config.load_config`'s form).

    Raises:
        ConfigError: naming the file and every contradicting key, or a bad key or value.

    Example:
        >>> cfg = hyperparams_config("outputs/quickstart/best_params.json",  # doctest: +SKIP
        ...                          overrides={"run_dir": "runs/best"})
    """
    from fspnet.config import get_path, load_config, resolve, set_path
    from runtools.io import read_mapping

    p = Path(path)
    data = _read_hyperparams_file(p)
    overrides = dict(overrides or {})
    trial = data.get("config") if _is_best_params(data) else None
    if trial is None:
        if _is_best_params(data):
            log.warning(
                "%s: holds the tuned values only, not the whole config of trial %s; they are applied over %s, "
                "so the network and data may differ from the trial's (rewrite it with python -m hpo.report)",
                p, data.get("trial", "?"), config_file or "the trainer defaults",
            )  # fmt: skip
        return load_config(config_file, {**read_hyperparams(p), **overrides})
    trainable = data.get("trainable", "fspnet")
    if trainable != "fspnet" or not isinstance(trial, dict):
        raise ConfigError(f"{p}: 'config' is the config of trainable {trainable!r}, not an fspnet trainer config")
    source = f"{p} (trial {data.get('trial', '?')})"
    base = resolve(trial, source=f"{source}: config")
    defaults = resolve({})
    for key in RUN_KEYS:
        set_path(base, key, get_path(defaults, key))
    changes: list[tuple[str, str, tp.Any]] = []  # (where, key, value)
    if config_file is not None:
        changes += [(str(config_file), k, v) for k, v in _leaves(read_mapping(config_file, ConfigError)).items()]
    changes += [("the command line", k, v) for k, v in overrides.items()]
    refused: list[str] = []
    for where, key, value in changes:
        if key in RUN_KEYS:
            set_path(base, key, value)
            continue
        trial_value = get_path(base, key, None)
        candidate = copy.deepcopy(base)
        try:
            set_path(candidate, key, value)
        except (KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"{where}: {key}: {e.args[0] if e.args else e}") from None
        new_value = get_path(resolve(candidate, source=where), key, None)
        if new_value == trial_value:
            continue
        if not override:
            refused.append(f"  {key}: {where} gives {new_value!r}, the trial trained with {trial_value!r}")
            continue
        log.warning("%s: overriding %s: the trial's %r -> %r (%s)", p, key, trial_value, new_value, where)
        base = candidate
    if refused:
        raise ConfigError(
            f"{source}: {len(refused)} key(s) contradict the trial's config:\n" + "\n".join(refused) + "\n"
            "drop them to train the trial's config exactly, or pass --override to train a different one"
        )
    return resolve(base, source=source)


def _leaves(mapping: tp.Mapping[str, tp.Any], prefix: str = "") -> dict[str, tp.Any]:
    """Dotted paths of a nested mapping's values; an empty mapping sets nothing."""
    out: dict[str, tp.Any] = {}
    for key, value in mapping.items():
        if isinstance(value, tp.Mapping):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
