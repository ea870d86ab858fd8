"""Convert an FSP-Net ``config.yaml`` into this project's trainer, generator and study configs.

FSP-Net keeps one YAML file for its four scripts (``spectrum-fit``, ``data-preprocessing``,
``synthesize-spectra``, ``network-optimizer``; older files hold them as four YAML documents in
that order). This command maps every key it can and names every key it cannot, with the
reason::

    python -m fspnet.convert path/to/FSP-Net/config.yaml --out configs/from_fspnet --dry-run
    python -m fspnet.convert path/to/FSP-Net/config.yaml --out configs/from_fspnet

It writes ``fspnet_decoder.yaml`` and ``fspnet_encoder.yaml`` (``configs/fspnet.yaml``
schema, checked by :mod:`fspnet.config`), ``synthesize.yaml`` (``configs/synthesize.yaml``
schema, checked by :func:`fspnet.synthesize.validate_config`), ``study.yaml`` (the
``studies/*.yaml`` schema; check it with ``hpo``, e.g. ``hpo.study.load_study_config``) and
``conversion.txt`` (the unmapped keys and notes). ``--dry-run`` prints all of it instead.

FSP-Net's relative paths are relative to its script folder (``fspnet/`` beside the config
file); ``--base`` changes that. Pickled datasets are not read here: each ``*.pickle`` path
becomes the same path with ``.h5``; convert the data once yourself (see the README section
"Coming from FSP-Net").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import typing as tp
from pathlib import Path

import yaml

from fspnet.errors import ConfigError, FspnetError

log = logging.getLogger(__name__)

_SECTIONS = ("spectrum-fit", "data-preprocessing", "synthesize-spectra", "network-optimizer")
# top-level keys of the per-script documents of older FSP-Net files
_OLD_KEYS = {"training", "data", "model", "output", "preprocessing", "augmentation", "synthesize", "optimization"}
_NATIVE_MODEL = "tbabs*simplcutx(ezdiskbb)"
# FSP-Net's 1-based indices of the whole model's parameters, and the values that the native
# model fixes (simplcutx's reflection fraction 0 and electron temperature 100 keV)
_NATIVE_FIXED = {4: 0.0, 5: 100.0}
_N_BINS = 240  # FSP-Net's spectra: 240 channels

# Keys with no counterpart here, and why (key paths as in FSP-Net's file).
_REASONS = {
    "spectrum-fit.training.tests": "PyXspec comparisons run separately: python -m fspnet.evaluate",
    "spectrum-fit.training.cpus": "only used by FSP-Net's PyXspec tests",
    "spectrum-fit.training.decoder-save": "numbered state files are gone: a run directory holds "
    "one run (run_dir); resume: true continues it",
    "spectrum-fit.training.encoder-save": "see decoder-save",
    "spectrum-fit.training.decoder-load": "see decoder-save; to train an encoder through a saved decoder use encoder.decoder_run",
    "spectrum-fit.training.encoder-load": "see decoder-save",
    "spectrum-fit.data.spectra-directory": "FITS spectra become a dataset with python -m "
    "fspnet.preprocess --spectra DIR --out FILE.h5",
    "spectrum-fit.model.iterations": "PyXspec fitting iterations: python -m fspnet.evaluate",
    "spectrum-fit.model.model-name": "the trainer learns whatever model made the dataset (its "
    "'source' attribute); the generator config carries the model",
    "spectrum-fit.model.custom-model-name": "see model-name",
    "spectrum-fit.model.model-directory": "see model-name",
    "spectrum-fit.model.fixed-parameters": "see model-name",
    "spectrum-fit.model.default-parameters": "no default-parameter benchmark in the trainer",
    "spectrum-fit.model.parameter-names": "parameter names come from the dataset file (param_names)",
    "spectrum-fit.output.parameter-predictions-path": "python -m fspnet.predict writes predictions where --out says",
    "spectrum-fit.output.plots-directory": "plots are written into the run directory",
    "spectrum-fit.output.worker-directory": "no worker files",
    "data-preprocessing": "python -m fspnet.preprocess takes no config file (see the notes for the command)",
    "synthesize-spectra.synthesize.clear-spectra": "each run writes one new file (--out)",
    "synthesize-spectra.synthesize.flat-distribution-bias": "no bias towards a flat parameter "
    "distribution; sampling.method is uniform (or latin_hypercube)",
    "synthesize-spectra.synthesize.spectra-per-batch": "chunk_size bounds memory instead",
    "synthesize-spectra.synthesize.spectra-per-background": "one response and at most one "
    "background (background.file) for every spectrum",
    "synthesize-spectra.data.spectra-directory": "FSP-Net fakes spectra with the responses and "
    "backgrounds of real observations; here set response.rmf/arf and background.file",
    "synthesize-spectra.data.names-path": "see spectra-directory",
    "synthesize-spectra.output.worker-directory": "no worker files",
    "synthesize-spectra.model.custom-model-name": "local XSPEC models are not loaded, only "
    "XSPEC's own (the native model has simplcutx built in)",
    "synthesize-spectra.model.model-directory": "see custom-model-name",
    "network-optimizer.optimization.load": "a study lives in its storage: rerunning continues it",
    "network-optimizer.optimization.save": "see load",
}


@dataclasses.dataclass
class Conversion:
    """The result of :func:`convert`.

    Attributes:
        files: output file name -> config dict (trainer, generator and study configs).
        unmapped: ``"key.path: reason"`` for every FSP-Net key with no counterpart.
        notes: how mapped values changed, checks made, and commands to run.
        mapped: the FSP-Net key paths that were converted.
    """

    files: dict[str, dict[str, tp.Any]]
    unmapped: list[str]
    notes: list[str]
    mapped: list[str] = dataclasses.field(default_factory=list)

    def report(self) -> str:
        """The unmapped keys and notes as text."""
        lines = ["Unmapped FSP-Net keys (no counterpart here):"]
        lines += [f"  - {u}" for u in self.unmapped] or ["  (none)"]
        lines += ["Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


class _Reader:
    """Walks FSP-Net's config and records which leaf keys were used."""

    def __init__(self, sections: dict[str, tp.Any]) -> None:
        self.sections = sections
        self.used: set[str] = set()

    def get(self, path: str, default: tp.Any = None) -> tp.Any:
        node: tp.Any = self.sections
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        self.used.add(path)
        return node

    def leaves(self) -> list[str]:
        out: list[str] = []

        def walk(node: tp.Any, prefix: str) -> None:
            if isinstance(node, dict) and node and not all(isinstance(k, int) for k in node):
                for key, value in node.items():
                    walk(value, f"{prefix}.{key}" if prefix else str(key))
            else:
                out.append(prefix)

        walk(self.sections, "")
        return out


def convert(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str], base: str | os.PathLike[str] | None = None
) -> Conversion:
    """Map an FSP-Net ``config.yaml`` onto this project's configs and validate them.

    Args:
        path: FSP-Net's ``config.yaml``.
        out_dir: where the files will be written (paths between them are built from it).
        base: the folder FSP-Net's relative paths are relative to (default: ``fspnet/``
            beside the config file when it exists, else the config file's folder).

    Returns:
        The configs, the unmapped keys and notes.

    Raises:
        ConfigError: The file is not FSP-Net's format, or a produced config fails the
            project's own validation (naming the file and key).
    """
    path = Path(path)
    out = Path(out_dir)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read FSP-Net config ({error})") from None
    sections = _sections(path, docs)
    if base is None:
        base = path.parent / "fspnet" if (path.parent / "fspnet").is_dir() else path.parent
    base = Path(base)
    r = _Reader(sections)
    notes = [f"FSP-Net's relative paths were read relative to {base} (--base)"]

    def fpath(value: tp.Any, *, dataset: bool = False, output: bool = False) -> str | None:
        if not value:
            return None
        p = Path(os.path.normpath(base / str(value)))
        if dataset and p.suffix.lower() in (".pickle", ".pkl", ".npy"):
            if not output:
                notes.append(
                    f"{value}: datasets are HDF5 here; convert it once to {p.with_suffix('.h5')} (README: Coming from FSP-Net)"
                )
            p = p.with_suffix(".h5")
        return str(p)

    def network(name_key: str, dir_key: str) -> str | None:
        name, folder = r.get(name_key), r.get(dir_key)
        if not name:
            return None
        return fpath(Path(str(folder or "")) / f"{name}.json")

    # -- trainer -------------------------------------------------------------------------------
    n_params = r.get("spectrum-fit.model.parameters-number")
    log_params = r.get("spectrum-fit.model.log-parameters")
    training = {
        k: v
        for k, v in {
            "epochs": r.get("spectrum-fit.training.epochs"),
            "batch_size": r.get("spectrum-fit.training.batch-size"),
            "learning_rate": r.get("spectrum-fit.training.learning-rate"),
        }.items()
        if v is not None
    }
    states = fpath(r.get("spectrum-fit.output.network-states-directory"))
    decoder_net = network("spectrum-fit.training.decoder-name", "spectrum-fit.training.network-configs-directory")
    encoder_net = network("spectrum-fit.training.encoder-name", "spectrum-fit.training.network-configs-directory")
    decoder_run = str(Path(states) / "decoder") if states else None
    files: dict[str, dict[str, tp.Any]] = {}
    stages = (("decoder", decoder_net, "decoder-data-path"), ("encoder", encoder_net, "encoder-data-path"))
    for stage, net, data_key in stages if "spectrum-fit" in sections else ():
        cfg: dict[str, tp.Any] = {"stage": stage}
        if states:
            cfg["run_dir"] = str(Path(states) / stage)
        data = {
            "path": fpath(r.get(f"spectrum-fit.data.{data_key}"), dataset=True),
            "log_params": list(log_params) if log_params is not None else None,
        }
        cfg["data"] = {k: v for k, v in data.items() if v is not None}
        if net:
            cfg[stage] = {"network": net}
            notes.append(_network_check(stage, net, n_params))
        if stage == "encoder" and decoder_run:
            cfg.setdefault("encoder", {})["decoder_run"] = decoder_run
        if training:
            cfg["training"] = dict(training)
        files[f"fspnet_{stage}.yaml"] = cfg
    _validate_trainer(files)

    # -- generator -----------------------------------------------------------------------------
    synth, commands = _synthesize(r, notes, fpath, out)
    if synth is not None:
        from fspnet.synthesize import validate_config

        try:
            validate_config(synth, source=str(out / "synthesize.yaml"))
        except FspnetError as error:
            raise ConfigError(f"the converted generator config is invalid: {error}") from None
        files["synthesize.yaml"] = synth
        notes += commands

    # -- preprocessing: a command, not a config ------------------------------------------------
    spectra = fpath(r.get("data-preprocessing.data.spectra-directory"))
    if spectra:
        background = fpath(r.get("data-preprocessing.data.background-directory"))
        processed = fpath(r.get("data-preprocessing.output.processed-path"), dataset=True, output=True)
        notes.append(
            f"turn the FITS spectra into a dataset: python -m fspnet.preprocess "
            f"--spectra {spectra}"
            + (f" --background-dir {background}" if background else "")
            + f" --out {processed or 'FILE.h5'}"
        )

    # -- study ---------------------------------------------------------------------------------
    study = _study(r, fpath, network, out)
    if study is not None:
        files["study.yaml"] = study
        notes.append(
            f'check the study with: python -c "import hpo.study as s; '
            f"s.load_study_config('{out / 'study.yaml'}')\"; the search space "
            "(tune_params) is a starting point: FSP-Net's optimizer had none to convert"
        )

    # -- every key not used above ----------------------------------------------------------------
    unmapped = []
    for leaf in r.leaves():
        if leaf in r.used or leaf.startswith("global-variables"):
            continue
        reason = _REASONS.get(leaf) or next(
            (_REASONS[k] for k in sorted(_REASONS, key=len, reverse=True) if leaf.startswith(k + ".")),
            "no counterpart in this project",
        )
        unmapped.append(f"{leaf}: {reason}")
    if "global-variables" in sections:
        notes.append("global-variables holds YAML anchors; their values were converted where the sections use them")
    mapped = [leaf for leaf in r.leaves() if leaf in r.used]
    return Conversion(files, unmapped, list(dict.fromkeys(notes)), mapped)


def _sections(path: Path, docs: list[tp.Any]) -> dict[str, tp.Any]:
    if len(docs) == 1 and isinstance(docs[0], dict) and any(s in docs[0] for s in _SECTIONS):
        return docs[0]
    if docs and len(docs) <= len(_SECTIONS) and all(isinstance(d, dict) and d and set(d) <= _OLD_KEYS for d in docs):
        return dict(zip(_SECTIONS, docs))  # older files: one YAML document per script
    raise ConfigError(
        f"{path}: not an FSP-Net config.yaml: expected the sections {', '.join(_SECTIONS)} (or one YAML document per script)"
    )


def _network_check(stage: str, net: str, n_params: tp.Any) -> str:
    from fspnet.errors import NetworkConfigError
    from fspnet.nets import build_network

    if not Path(net).is_file():
        return f"{stage}.network: {net} does not exist here; copy FSP-Net's network_configs/"
    n = int(n_params) if isinstance(n_params, int) else 5
    shapes = ((n,), (_N_BINS,)) if stage == "decoder" else ((_N_BINS,), (n,))
    try:
        model = build_network(net, *shapes)
    except NetworkConfigError as error:
        return f"{stage}.network: does not build for {shapes[0]} -> {shapes[1]}: {error}"
    weights = sum(p.numel() for p in model.parameters())
    return f"{stage}.network: {net} builds {list(shapes[0])} -> {list(model.output_shape)} with {weights:,} weights"


def _synthesize(
    r: _Reader, notes: list[str], fpath: tp.Callable[..., str | None], out: Path
) -> tuple[dict[str, tp.Any] | None, list[str]]:
    if "synthesize-spectra" not in r.sections:
        return None, []
    pre = "synthesize-spectra"
    cfg: dict[str, tp.Any] = {}
    model_name = str(r.get(f"{pre}.model.model-name") or "")
    native = (
        not model_name
        or re.sub(r"\s+", "", model_name.lower()).replace("tbabs(simplcutx(ezdiskbb))", _NATIVE_MODEL) == _NATIVE_MODEL
    )  # FSP-Net's model
    fixed = r.get(f"{pre}.model.fixed-parameters") or {}
    limits = r.get(f"{pre}.model.parameter-limits") or []
    log_params = set(r.get(f"{pre}.model.log-parameters") or [])
    n_params = r.get(f"{pre}.model.parameters-number")
    if native:
        r.get(f"{pre}.model.custom-model-name")  # simplcutx is built in
        r.get(f"{pre}.model.model-directory")
        notes.append(f"model {model_name or _NATIVE_MODEL!r} is the native model (simplcutx built in, no XSPEC needed)")
        fixed_values = {int(k): float(v) for k, v in dict(fixed).items()}
        if fixed_values and fixed_values != _NATIVE_FIXED:
            raise ConfigError(
                f"{pre}.model.fixed-parameters: the native model fixes "
                f"{_NATIVE_FIXED} (1-based indices), but FSP-Net's file has "
                f"{fixed_values}; use model.backend: xspec for other values"
            )
        from fspnet.synthesize import build_model, validate_config

        names: list[str] = list(build_model(validate_config({})).param_names)
    else:
        cfg["model"] = {"backend": "xspec", "expression": model_name}
        xspec_names = _xspec_free_names(model_name, dict(fixed), cfg["model"], pre)
        if xspec_names is None:  # without XSPEC's library the indices cannot be named
            r.used.discard(f"{pre}.model.fixed-parameters")
        names = xspec_names or []
    if isinstance(n_params, int) and native and n_params != len(names):
        raise ConfigError(
            f"{pre}.model.parameters-number: {n_params}, but the native model has "
            f"{len(names)} free parameters ({', '.join(names)})"
        )
    if names and limits:
        if len(limits) != len(names):
            raise ConfigError(
                f"{pre}.model.parameter-limits: {len(limits)} ranges, but the "
                f"model has {len(names)} free parameters ({', '.join(names)})"
            )
        cfg["sampling"] = {
            "params": {
                name: {"low": float(lim["low"]), "high": float(lim["high"]), "log": i in log_params}
                for i, (name, lim) in enumerate(zip(names, limits))
            }
        }
        notes.append("parameter-limits and log-parameters -> sampling.params, in the order " + ", ".join(names))
    elif limits:
        r.used.discard(f"{pre}.model.parameter-limits")
        r.used.discard(f"{pre}.model.log-parameters")
    cpus = r.get(f"{pre}.synthesize.cpus")
    if isinstance(cpus, int) and cpus > 0:
        cfg["workers"] = cpus
    elif cpus is not None:
        notes.append(f"{pre}.synthesize.cpus: {cpus} (all CPUs) -> workers left at its default 1")
    number = r.get(f"{pre}.synthesize.synthetic-number")
    target = fpath(r.get(f"{pre}.output.synthetic-path"), dataset=True, output=True) or "data/synthetic.h5"
    command = f"python -m fspnet.synthesize --config {out / 'synthesize.yaml'} --out {target}"
    if number:
        command += f" --n {number}"
    return cfg, [f"make the synthetic dataset: {command}"]


def _xspec_free_names(expression: str, fixed: dict[tp.Any, tp.Any], model: dict[str, tp.Any], pre: str) -> list[str] | None:
    """XSPEC's names of the free parameters (FSP-Net's order), setting ``model['fixed']``; None
    when XSPEC's model library is not installed."""
    try:
        from fspnet.physics import XspecModel

        every = list(XspecModel(expression).all_param_names)
    except ImportError:
        return None
    except FspnetError as error:
        raise ConfigError(f"{pre}.model.model-name: {error}") from None
    for index in fixed:
        if not isinstance(index, int) or not 1 <= index <= len(every):
            raise ConfigError(f"{pre}.model.fixed-parameters: index {index!r} is not one of 1..{len(every)} ({', '.join(every)})")
    if fixed:
        model["fixed"] = {every[i - 1]: float(v) for i, v in fixed.items()}
    return [name for i, name in enumerate(every, start=1) if i not in fixed]


def _study(
    r: _Reader, fpath: tp.Callable[..., str | None], network: tp.Callable[[str, str], str | None], out: Path
) -> dict[str, tp.Any] | None:
    pre = "network-optimizer"
    if pre not in r.sections:
        return None
    name = str(r.get(f"{pre}.optimization.name") or "decoder")
    stage = "encoder" if "encoder" in name.lower() else "decoder"
    net = network(f"{pre}.optimization.name", f"{pre}.optimization.network-configs-directory")
    config: dict[str, tp.Any] = {"stage": stage}
    data = {
        "path": fpath(r.get(f"{pre}.data.spectra-path"), dataset=True),
        "log_params": r.get(f"{pre}.optimization.log-parameters"),
    }
    config["data"] = {k: v for k, v in data.items() if v is not None}
    if net:
        config[stage] = {"network": net}
    epochs = r.get(f"{pre}.optimization.epochs")
    if epochs:
        config["training"] = {"epochs": epochs}
    study: dict[str, tp.Any] = {
        "name": re.sub(r"[^A-Za-z0-9._-]+", "_", f"fspnet_{name}").strip("_"),
        "output_dir": fpath(r.get(f"{pre}.output.network-states-directory")) or "outputs",
        "storage": None,
        "direction": "minimize",
        "metric": "val_loss",
        "max_trials": r.get(f"{pre}.optimization.trials") or 30,
        "sampler": {"name": "TPESampler", "configs": {}},
        "pruner": {
            "name": "MedianPruner",
            "configs": {"n_startup_trials": r.get(f"{pre}.optimization.pruning-minimum-trials") or 5},
        },
        "trainable": "fspnet",
        "config_file": str(out / f"fspnet_{stage}.yaml"),
        "config": config,
        "tune_params": {
            "learning_rate": {
                "state": True,
                "suggest": "float",
                "path": "training.learning_rate",
                "kwargs": {"low": 1.0e-5, "high": 3.0e-3, "log": True},
            },
            "batch_size": {"state": True, "suggest": "cat", "path": "training.batch_size", "kwargs": {"choices": [60, 120, 240]}},
        },
    }
    return study


def _validate_trainer(files: dict[str, dict[str, tp.Any]]) -> None:
    from fspnet.config import from_dict

    for name, cfg in files.items():
        try:
            from_dict(cfg, source=name)
        except FspnetError as error:
            raise ConfigError(f"the converted trainer config is invalid: {error}") from None


def _dump(cfg: dict[str, tp.Any], source: Path) -> str:
    header = f"# Converted from FSP-Net's {source} by python -m fspnet.convert\n"
    return header + yaml.safe_dump(json.loads(json.dumps(cfg)), sort_keys=False)


def write(conversion: Conversion, out_dir: str | os.PathLike[str], source: Path) -> list[Path]:
    """Write the converted files and ``conversion.txt`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, cfg in conversion.files.items():
        (out / name).write_text(_dump(cfg, source))
        written.append(out / name)
    (out / "conversion.txt").write_text(conversion.report())
    return [*written, out / "conversion.txt"]


def main(argv: list[str] | None = None) -> int:
    """``python -m fspnet.convert CONFIG.yaml --out DIR [--dry-run] [--base DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m fspnet.convert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="FSP-Net's config.yaml")
    parser.add_argument("--out", type=Path, required=True, help="folder for the converted files")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="folder FSP-Net's relative paths are relative to (default: fspnet/ beside the config file, else its folder)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the result, write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        conversion = convert(args.config, args.out, args.base)
    except FspnetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for name, cfg in conversion.files.items():
            print(f"--- {args.out / name}")
            print(_dump(cfg, args.config), end="")
        print(f"--- {args.out / 'conversion.txt'}")
        print(conversion.report(), end="")
        return 0
    for path in write(conversion, args.out, args.config):
        log.info("wrote %s", path)
    log.info("%d FSP-Net key(s) not mapped; see %s", len(conversion.unmapped), args.out / "conversion.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
