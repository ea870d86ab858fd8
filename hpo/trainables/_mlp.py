"""A generic MLP regressor trainable: inputs → outputs from an HDF5 or NPZ file.

It proves :mod:`hpo` is not tied to fspnet, and doubles as a small but real model for quick
studies: an fspnet dataset with ``inputs: params`` and ``outputs: spectra`` is a decoder task.

Training runs in stages; the learning rate is divided by 10 at the start of each new stage.
Optionally the network is then fine-tuned on the N training samples with the worst loss.
Every epoch (stages and fine-tuning counted together) calls the callback with
``train_loss``, ``val_loss``, ``lr`` and ``stage``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import threading
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hpo.errors import TrainableError
from hpo.trainables._base import Callback, Trainable
from runtools.io import atomic_path, write_json, write_text
from runtools.schema import at_least, build, field, interval, one_of, positive

__all__ = ["MLPTrainable", "default_mlp_config", "make_example_data", "train_mlp"]

_LOG = logging.getLogger(__name__)

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
LOSSES: dict[str, type[nn.Module]] = {"mse": nn.MSELoss, "l1": nn.L1Loss, "huber": nn.HuberLoss}


@dataclasses.dataclass
class DataConfig:
    """Where the data are and how they are split and scaled."""

    path: str = field("", None, "HDF5 or NPZ file")
    inputs: str = field("x", None, "array of the inputs")
    outputs: str = field("y", None, "array of the outputs")
    val_fraction: float = field(0.2, interval(0, 1, closed="neither"), "fraction held out for validation")
    split_seed: int = field(0, None, "seed of the split")
    log_inputs: bool | list[int] = field(False, None, "log10 of all (true) or some (indices) inputs")
    log_outputs: bool | list[int] = field(False, None, "log10 of all (true) or some (indices) outputs")
    standardize: bool = field(True, None, "scale inputs and outputs to zero mean, unit variance")
    max_samples: int | None = field(None, at_least(0), "use only the first N samples (0 or null: all)")
    generate: int | None = field(None, at_least(0), "write N example samples to path when it is missing (0: off)")


@dataclasses.dataclass
class ModelConfig:
    """The network: ``layers`` hidden layers of ``width`` units."""

    layers: int = field(2, at_least(0), "hidden layers")
    width: int = field(64, at_least(1), "units per hidden layer")
    activation: str = field("relu", one_of(*ACTIVATIONS), "activation function")
    dropout: float = field(0.0, interval(0, 1), "dropout probability")
    batch_norm: bool = field(False, None, "batch normalisation after each hidden layer")


@dataclasses.dataclass
class OptimizerConfig:
    """Optimizer name and its settings."""

    name: str = field("adam", one_of(*OPTIMIZERS), "torch optimizer")
    lr: float = field(1e-3, positive, "learning rate")
    weight_decay: float = field(0.0, at_least(0), "weight decay")
    momentum: float = field(0.9, at_least(0), "momentum (sgd, rmsprop)")


@dataclasses.dataclass
class TrainingConfig:
    """Multi-stage schedule and fine-tuning on the worst samples."""

    batch_size: int = field(64, at_least(1), "samples per batch")
    stages: int = field(2, at_least(1), "stages; the learning rate drops tenfold at each new one")
    epochs_per_stage: int = field(10, at_least(1), "epochs per stage")
    loss: str = field("mse", one_of(*LOSSES), "loss function")
    fine_tune_worst: int = field(0, at_least(0), "fine-tune on the N training samples with the worst loss (0: off)")
    fine_tune_epochs: int = field(0, at_least(0), "epochs of that fine-tuning")
    checkpoint_every: int = field(1, at_least(0), "write the checkpoint every N epochs (0: at the end)")
    plots: bool = field(True, None, "write loss_curve.png")


@dataclasses.dataclass
class MLPConfig:
    """The whole config of the MLP trainable; every field has a default."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    run_dir: str | None = None
    seed: int = 0
    resume: bool = False
    device: str = "auto"
    quick_scan: int | None = None


def default_mlp_config() -> dict[str, tp.Any]:
    """The full default config of the MLP trainable as a plain dict."""
    return dataclasses.asdict(MLPConfig())


def check_mlp_config(config: dict[str, tp.Any]) -> list[str]:
    """Return every problem of ``config`` as ``"key.path: message"`` (empty when valid)."""
    errors: list[str] = []
    build(config, MLPConfig, errors)
    return errors


class MLPTrainable(Trainable):
    """The ``"mlp"`` trainable: :func:`train_mlp` with config checks and defaults."""

    name = "mlp"

    def load_config(self, config: dict[str, tp.Any] | None, config_file: Path | None) -> dict[str, tp.Any]:
        cfg = super().load_config(config, config_file)
        self.check_config(cfg)
        out = default_mlp_config()
        for key, value in cfg.items():
            if isinstance(value, dict):
                out[key].update(value)
            else:
                out[key] = value
        return out

    def check_config(self, config: dict[str, tp.Any]) -> None:
        errors = check_mlp_config(config)
        if errors:
            raise TrainableError("invalid mlp config:\n  " + "\n  ".join(errors))

    def quick_scan(self, config: dict[str, tp.Any], n_samples: int) -> dict[str, tp.Any]:
        config = copy.deepcopy(config)
        config["data"]["max_samples"] = int(n_samples)
        return config

    def train(
        self, config: dict[str, tp.Any], callback: Callback | None = None, interrupt: threading.Event | None = None
    ) -> dict[str, tp.Any]:
        return train_mlp(config, callback, interrupt=interrupt)


# ----------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def _read_arrays(path: str, mtime_ns: int, inputs: str, outputs: str) -> tuple[np.ndarray, np.ndarray]:
    """Read (and cache per process) the input and output arrays of one file."""
    del mtime_ns  # part of the cache key only: a rewritten file is read again
    p = Path(path)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in (inputs, outputs) if k in f.files}
                available = list(f.files)
        else:
            import h5py

            with h5py.File(p, "r") as f:
                arrays = {k: f[k][()] for k in (inputs, outputs) if k in f}
                available = list(f.keys())
    except OSError as e:
        raise TrainableError(f"{p}: cannot read data file ({e})") from None
    for key, role in ((inputs, "inputs"), (outputs, "outputs")):
        if key not in arrays:
            raise TrainableError(f"{p}: data.{role}: no array {key!r}; the file has {', '.join(available)}")
    x = np.asarray(arrays[inputs], dtype=np.float64)
    y = np.asarray(arrays[outputs], dtype=np.float64)
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    if len(x) != len(y):
        raise TrainableError(f"{p}: {len(x)} input rows but {len(y)} output rows")
    return x, y


def _log_columns(spec: bool | list[int], n: int) -> list[int]:
    if spec is True:
        return list(range(n))
    return [int(i) for i in spec] if isinstance(spec, list) else []


class _Scaler:
    """Log (chosen columns) then standardise, fitted on the training split only."""

    def __init__(self, log_cols: list[int], standardize: bool) -> None:
        self.log_cols, self.standardize = log_cols, standardize
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, a: np.ndarray) -> _Scaler:
        a = self._log(a)
        self.mean = a.mean(0) if self.standardize else np.zeros(a.shape[1])
        std = a.std(0) if self.standardize else np.ones(a.shape[1])
        self.std = np.where(std > 0, std, 1.0)
        return self

    def _log(self, a: np.ndarray) -> np.ndarray:
        if self.log_cols:
            a = a.copy()
            a[:, self.log_cols] = np.log10(np.clip(a[:, self.log_cols], 1e-300, None))
        return a

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return (self._log(a) - self.mean) / self.std

    def to_dict(self) -> dict[str, tp.Any]:
        assert self.mean is not None and self.std is not None, "to_dict() before fit()"
        return {"log_columns": self.log_cols, "mean": self.mean.tolist(), "std": self.std.tolist()}


def make_example_data(path: str | Path, n: int = 4000, n_bins: int = 64, seed: int = 0) -> Path:
    """Write an NPZ regression problem: ``x`` [n, 3] → ``y`` [n, n_bins] (log10 of a cut-off
    power law with an emission line on a log energy grid, plus 1 % noise).

    The inputs are the photon index (1–3), log10 of the cut-off energy (0.5–2) and the line
    strength (0–1); the outputs are a smooth spectrum-like curve, so the task resembles an
    fspnet decoder at a fraction of its cost.
    """
    rng = np.random.default_rng(seed)
    energy = np.logspace(-0.5, 1.5, n_bins)  # [C] keV
    gamma = rng.uniform(1.0, 3.0, n)
    log_ecut = rng.uniform(0.5, 2.0, n)
    line = rng.uniform(0.0, 1.0, n)
    flux = energy[None] ** -gamma[:, None] * np.exp(-energy[None] / 10 ** log_ecut[:, None])
    flux += line[:, None] * np.exp(-0.5 * ((energy[None] - 6.4) / 0.3) ** 2) * 0.05
    y = np.log10(flux) + 0.01 * rng.normal(size=flux.shape) / np.log(10)
    x = np.stack([gamma, log_ecut, line], axis=1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y, energy=energy)
    return Path(path)


def _prepare_data(cfg: DataConfig) -> dict[str, tp.Any]:
    path = Path(cfg.path)
    if not path.is_file() and cfg.generate:
        _LOG.info("%s: generating %d example samples", path, cfg.generate)
        make_example_data(path, n=int(cfg.generate))
    if not path.is_file():
        raise TrainableError(f"data.path: file not found: {path} (set data.generate: N to make an example file)")
    x, y = _read_arrays(str(path.resolve()), path.stat().st_mtime_ns, cfg.inputs, cfg.outputs)
    # The split depends only on split_seed, so every trial of a study sees the same val set.
    order = np.random.default_rng(cfg.split_seed).permutation(len(x))
    if cfg.max_samples:
        order = order[: cfg.max_samples]
    n_val = max(1, int(round(len(order) * cfg.val_fraction)))
    if len(order) - n_val < 1:
        raise TrainableError(f"data: {len(order)} samples leave no training data with val_fraction={cfg.val_fraction}")
    val_idx, train_idx = order[:n_val], order[n_val:]
    sx = _Scaler(_log_columns(cfg.log_inputs, x.shape[1]), cfg.standardize).fit(x[train_idx])
    sy = _Scaler(_log_columns(cfg.log_outputs, y.shape[1]), cfg.standardize).fit(y[train_idx])

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32)

    return {
        "x_train": t(sx(x[train_idx])),
        "y_train": t(sy(y[train_idx])),
        "x_val": t(sx(x[val_idx])),
        "y_val": t(sy(y[val_idx])),
        "transforms": {"inputs": sx.to_dict(), "outputs": sy.to_dict(), "train_index": len(train_idx), "val_index": len(val_idx)},
    }


# ----------------------------------------------------------------------------- model


def build_mlp(n_in: int, n_out: int, cfg: ModelConfig) -> nn.Sequential:
    """``layers`` × (Linear → [BatchNorm] → activation → [Dropout]) then a Linear head."""
    mods: list[nn.Module] = []
    width_in = n_in
    for _ in range(cfg.layers):
        mods.append(nn.Linear(width_in, cfg.width))
        if cfg.batch_norm:
            mods.append(nn.BatchNorm1d(cfg.width))
        mods.append(ACTIVATIONS[cfg.activation]())
        if cfg.dropout > 0:
            mods.append(nn.Dropout(cfg.dropout))
        width_in = cfg.width
    mods.append(nn.Linear(width_in, n_out))
    return nn.Sequential(*mods)


def _make_optimizer(params: tp.Iterable[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    kwargs: dict[str, tp.Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name in ("sgd", "rmsprop"):
        kwargs["momentum"] = cfg.momentum
    return OPTIMIZERS[cfg.name](params, **kwargs)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _train_epoch(model, opt, loss_fn, x, y, batch_size, gen, pos=None, interrupt=None) -> float | None:
    """One epoch in random batches; returns the mean loss, or None when ``interrupt`` stopped it.

    ``pos`` (``{"order", "start", "total"}``, updated in place) is where the epoch is: a new
    one is drawn from ``gen`` when it is empty. After an interruption it holds the next batch.
    """
    model.train()
    if pos is None:
        pos = {}
    if not pos:
        pos.update(order=torch.randperm(len(x), generator=gen), start=0, total=0.0)
    order = pos["order"]
    while pos["start"] < len(x):
        start = pos["start"]
        idx = order[start : start + batch_size]
        pos["start"] = start + batch_size
        if len(idx) < 2 and any(isinstance(m, nn.BatchNorm1d) for m in model):
            continue  # BatchNorm cannot train on a batch of one
        xb, yb = x[idx], y[idx]  # [B, I], [B, O]
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        pos["total"] += loss.item() * len(idx)
        if interrupt is not None and pos["start"] < len(x) and interrupt.is_set():
            return None
    return pos["total"] / len(x)


@torch.no_grad()
def _per_sample_loss(model, loss_fn, x, y, batch_size=4096) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        pred = model(x[start : start + batch_size])
        out.append(loss_fn(pred, y[start : start + batch_size]).mean(dim=1))
    return torch.cat(out)


# ----------------------------------------------------------------------------- loop


def train_mlp(
    config: dict[str, tp.Any], callback: Callback | None = None, *, interrupt: threading.Event | None = None
) -> dict[str, tp.Any]:
    """Train the MLP regressor described by ``config`` (see :func:`default_mlp_config`).

    Args:
        config: the resolved config; ``run_dir`` receives the artifacts (``config.json``,
            ``transforms.json``, ``metrics.csv``/``metrics.json``, ``best.safetensors``,
            ``last.pt``, ``loss_curve.png``, ``reconstruction.png``). With ``resume: true``
            training continues from ``run_dir/last.pt`` (epoch, optimizer, RNG, history).
        callback: called after every epoch with ``(epoch, metrics)``; returning a collection
            holding ``"stop"`` ends training, ``"checkpoint"`` writes ``last.pt`` now.
        interrupt: when set, training ends after the current batch with ``last.pt`` holding
            the position inside the epoch (``stopped == "interrupted"``); resuming continues
            from that batch exactly.

    Returns:
        ``{"metrics": {"val_loss": best, "train_loss": ..., "final_val_loss": ...},
        "best_epoch", "epochs", "run_dir", "stopped"}``.

    Example:
        >>> cfg = default_mlp_config()  # doctest: +SKIP
        >>> cfg["data"]["path"] = "data.npz"; cfg["run_dir"] = "runs/mlp"
        >>> train_mlp(cfg)["metrics"]["val_loss"]
    """
    errors = check_mlp_config(config)
    if errors:
        raise TrainableError("invalid mlp config:\n  " + "\n  ".join(errors))
    full = default_mlp_config()
    for key, value in config.items():
        full[key] = {**full[key], **value} if isinstance(value, dict) else value
    data_cfg, model_cfg = DataConfig(**full["data"]), ModelConfig(**full["model"])
    opt_cfg, train_cfg = OptimizerConfig(**full["optimizer"]), TrainingConfig(**full["training"])
    if full["quick_scan"]:
        data_cfg.max_samples = int(full["quick_scan"])
    run_dir = Path(full["run_dir"] or "runs/mlp")
    run_dir.mkdir(parents=True, exist_ok=True)
    device = _device(full["device"])
    torch.manual_seed(int(full["seed"]))
    gen = torch.Generator().manual_seed(int(full["seed"]))

    data = _prepare_data(data_cfg)
    x_tr, y_tr = data["x_train"].to(device), data["y_train"].to(device)
    x_val, y_val = data["x_val"].to(device), data["y_val"].to(device)
    model = build_mlp(x_tr.shape[1], y_tr.shape[1], model_cfg).to(device)
    opt = _make_optimizer(model.parameters(), opt_cfg)
    loss_fn = LOSSES[train_cfg.loss]()
    sample_loss_fn = LOSSES[train_cfg.loss](reduction="none")
    write_json(run_dir / "config.json", full)
    write_json(run_dir / "transforms.json", data["transforms"])

    n_stage_epochs = train_cfg.stages * train_cfg.epochs_per_stage
    n_epochs = n_stage_epochs + (train_cfg.fine_tune_epochs if train_cfg.fine_tune_worst > 0 else 0)
    history: list[dict[str, float]] = []
    best = {"val_loss": math.inf, "epoch": -1}
    start_epoch = 0
    worst: torch.Tensor | None = None  # indices of the fine-tuning samples
    pos: dict[str, tp.Any] = {}  # position inside an interrupted epoch (empty: none)
    ckpt_path = run_dir / "last.pt"
    if full["resume"] and ckpt_path.is_file():
        ckpt = _load_checkpoint(ckpt_path, device)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
        except (RuntimeError, ValueError, TypeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TrainableError(f"{ckpt_path}: does not fit this config ({reason})") from None
        history = json.loads(ckpt["history"])
        best = json.loads(ckpt["best"])
        start_epoch = int(ckpt["epoch"]) + 1
        worst = ckpt["worst"] if len(ckpt["worst"]) else None
        pos = dict(ckpt.get("partial") or {})
        _LOG.info("%s: resumed at epoch %d%s", run_dir, start_epoch, f", sample {pos['start']}" if pos else "")

    def save_checkpoint(epoch: int, partial: dict[str, tp.Any] | None = None) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(history),
            "best": json.dumps(best),
            "worst": torch.zeros(0, dtype=torch.long) if worst is None else worst,
            "partial": partial or None,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    from safetensors.torch import save_file

    stopped = "max_epochs"
    t0 = time.perf_counter()
    for epoch in range(start_epoch, n_epochs):
        if interrupt is not None and interrupt.is_set() and not pos:
            save_checkpoint(epoch - 1)  # between epochs: nothing of this one has run
            stopped = "interrupted"
            break
        stage = min(epoch // train_cfg.epochs_per_stage, train_cfg.stages)  # == stages while fine-tuning
        lr = opt_cfg.lr * 0.1**stage
        for group in opt.param_groups:
            group["lr"] = lr
        if epoch >= n_stage_epochs:
            if worst is None:
                # The worst samples are chosen once, with the model as it left the last stage.
                worst = _per_sample_loss(model, sample_loss_fn, x_tr, y_tr).argsort(descending=True)
                worst = worst[: train_cfg.fine_tune_worst].cpu()
            fine_x, fine_y = x_tr[worst.to(device)], y_tr[worst.to(device)]
            train_loss = _train_epoch(model, opt, loss_fn, fine_x, fine_y, train_cfg.batch_size, gen, pos, interrupt)
        else:
            train_loss = _train_epoch(model, opt, loss_fn, x_tr, y_tr, train_cfg.batch_size, gen, pos, interrupt)
        if train_loss is None:  # interrupted inside the epoch: keep its position and return
            save_checkpoint(epoch - 1, pos)
            _LOG.warning("%s: epoch %d interrupted at sample %d; checkpoint written", run_dir, epoch, pos["start"])
            stopped = "interrupted"
            break
        pos = {}
        val_loss = float(_per_sample_loss(model, sample_loss_fn, x_val, y_val).mean())
        if not math.isfinite(val_loss):
            raise TrainableError(f"{run_dir}: validation loss is {val_loss} at epoch {epoch}; lower optimizer.lr?")
        metrics = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "stage": float(stage),
            "epoch_time_s": time.perf_counter() - t0,
        }
        t0 = time.perf_counter()
        history.append({"epoch": epoch, **metrics})
        if val_loss < best["val_loss"]:
            best = {"val_loss": val_loss, "epoch": epoch}
            with atomic_path(run_dir / "best.safetensors") as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        actions = set(callback(epoch, metrics) or ()) if callback else set()
        if "checkpoint" in actions or (train_cfg.checkpoint_every and (epoch + 1) % train_cfg.checkpoint_every == 0):
            save_checkpoint(epoch)
        if "stop" in actions:
            stopped = "callback"
            break

    _write_metrics(run_dir, history)
    if train_cfg.plots and history and stopped != "interrupted":
        _plot(run_dir, history, model, x_val, y_val)
    last = history[-1] if history else {}
    return {
        "metrics": {
            "val_loss": best["val_loss"],
            "train_loss": last.get("train_loss", math.nan),
            "final_val_loss": last.get("val_loss", math.nan),
        },
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "run_dir": str(run_dir),
        "stopped": stopped,
    }


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, tp.Any]:
    """``last.pt`` read with ``weights_only=True``; a clear error naming the file otherwise."""
    import pickle

    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise TrainableError(
            f"{path}: refused to load: the checkpoint holds objects other than tensors and plain containers; "
            "delete it to start again"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TrainableError(f"{path}: cannot read the checkpoint; it is truncated or corrupt ({reason})") from None
    keys = ("model", "optimizer", "generator", "torch_rng", "history", "best", "epoch", "worst")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in keys):
        raise TrainableError(f"{path}: not a checkpoint of the mlp trainable (expected keys {', '.join(keys)})")
    return ckpt


def _write_metrics(run_dir: Path, history: list[dict[str, float]]) -> None:
    write_json(run_dir / "metrics.json", history)
    if history:
        keys = list(history[0])
        rows = [",".join(keys)] + [",".join(f"{h[k]:.8g}" for k in keys) for h in history]
        write_text(run_dir / "metrics.csv", "\n".join(rows) + "\n")


def _plot(run_dir: Path, history: list[dict[str, float]], model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    with atomic_path(run_dir / "loss_curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)

    model.eval()
    with torch.no_grad():
        pred = model(x_val[:4]).cpu().numpy()
    true = y_val[:4].cpu().numpy()
    fig, axes = plt.subplots(1, len(true), figsize=(3 * len(true), 2.6), squeeze=False)
    for ax, p, t in zip(axes[0], pred, true):
        ax.plot(t, label="true")
        ax.plot(p, "--", label="predicted")
        ax.set(xlabel="output index")
    axes[0][0].legend()
    fig.tight_layout()
    with atomic_path(run_dir / "reconstruction.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
