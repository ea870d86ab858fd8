"""Train the FSP-Net decoder or encoder: config dict in, per-epoch metrics out, artifacts in a run dir.

The decoder learns spectrum = decoder(params) with a supervised MSE on synthetic spectra. The
encoder learns params = encoder(spectrum) through the *frozen* decoder of an earlier run:
``loss = recon_weight * MSE(decoder(encoder(x)), x) + latent_weight * MSE(encoder(x), params)``
(the second term only where the dataset has parameters).

:func:`train` reads top to bottom: config, seed and device; data (tensors on the device,
transforms fitted on the training split); model; optimiser and scheduler; resume; then the
epoch loop, which calls ``callback(epoch, metrics)`` after every epoch. The callback may
return ``"stop"`` and/or ``"checkpoint"``. A run directory holds:

=======================  =====================================================================
``config.json``          the resolved training config
``run.json``             stage, input/output shapes, parameter names and energy grid
``network.json``         the network config the model was built from
``transforms.json``      spectrum and parameter transforms (fitted on the training split)
``splits.json``          training / validation rows of the dataset file
``best.safetensors``     weights with the best validation loss
``last.pt``              last checkpoint: state dicts, counters, history and RNG states
                         (``torch.load(..., weights_only=True)``)
``metrics.csv/.json``    metrics per epoch
``provenance.json``      seed, git commit, packages, host, Slurm ids, GPU
``loss_curve.png``       loss per epoch
``reconstruction.png``   validation spectra against their reconstructions
``decoder.safetensors``  (encoder runs) a copy of the frozen decoder, with
``decoder_network.json``  its network config, so the run directory stands alone
=======================  =====================================================================

Command line::

    python -m fspnet.train --config configs/fspnet.yaml --stage decoder
    python -m fspnet.train --config configs/fspnet.yaml --stage encoder --set training.epochs=50
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import fcntl
import io
import json
import logging
import math
import os
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from fspnet import __version__
from fspnet._io import atomic_path, write_json, write_text
from fspnet._provenance import collect_provenance
from fspnet.config import Config, from_dict, load_config, parse_overrides, to_dict
from fspnet.data import SpectrumDataset, Transforms, load_split, load_transforms, make_split, subset_indices
from fspnet.data._dataset import read_dataset_cached
from fspnet.errors import ConfigError, DataError, NetworkConfigError

__all__ = ["Callback", "Run", "load_run", "main", "read_hyperparams", "train"]

log = logging.getLogger("fspnet.train")

#: Called after every epoch with ``(epoch, metrics)``; may return ``{"stop", "checkpoint"}``.
Callback = tp.Callable[[int, dict[str, float]], tp.Optional[tp.Iterable[str]]]

CHECKPOINT = "last.pt"
BEST = "best.safetensors"
EVAL_BATCH = 4096  # spectra per forward pass when evaluating (no gradients kept)


def train(config: tp.Mapping[str, tp.Any], callback: Callback | None = None) -> dict[str, tp.Any]:
    """Train the network of ``config["stage"]`` and write its artifacts into ``config["run_dir"]``.

    Args:
        config: a (possibly partial) :class:`fspnet.config.Config` as a plain dict, e.g. from
            :func:`fspnet.config.load_config`; missing keys take their defaults.
        callback: called after every epoch with ``(epoch, metrics)``; ``metrics`` holds
            ``epoch``, ``stage``, ``train_loss``, ``val_loss``, ``lr``, ``best_val_loss``,
            ``time_s`` (and ``val_recon_loss``, ``val_latent_loss`` for the encoder). It may
            return a collection holding ``"stop"`` (end training now) and/or ``"checkpoint"``
            (write the last checkpoint now).

    Returns:
        ``{"metrics": {...}, "best_epoch": int, "epochs": int, "run_dir": str, "stopped": str}``
        where ``metrics`` are those of the best epoch plus ``best_val_loss``,
        ``final_train_loss`` and ``final_val_loss``, and ``stopped`` is
        ``"early_stopping"`` (patience ran out in the last stage, or the loss became
        non-finite), ``"callback"`` or ``"max_epochs"``.

    Raises:
        ConfigError: for an invalid config (every bad key path listed).
        DataError: for a missing or unusable dataset.

    Example:
        >>> from fspnet.config import load_config
        >>> cfg = load_config("configs/fspnet.yaml", {"stage": "decoder", "training.epochs": 2})
        >>> result = train(cfg)  # doctest: +SKIP
        >>> result["stopped"]  # doctest: +SKIP
        'max_epochs'
    """
    # -- config, seed and device ---------------------------------------------------------------
    cfg: Config = from_dict(config)  # validate at the boundary; hpo passes plain dicts
    tc = cfg.training
    run_dir = Path(cfg.run_dir or f"runs/{cfg.stage}")
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = cfg.resume and (run_dir / CHECKPOINT).is_file()
    if cfg.resume and not resume:
        log.warning("%s: no %s to resume from; starting a new run", run_dir, CHECKPOINT)
    device = _device(tc.device)
    torch.manual_seed(tc.seed)
    log.info("%s %s run in %s on %s", "resuming" if resume else "starting", cfg.stage, run_dir, device)

    # -- data: the file (made once if missing), split, transforms, tensors on the device --------
    ds = read_dataset_cached(_ensure_dataset(cfg))
    if resume:
        split = load_split(run_dir / "splits.json")
    else:
        sub = cfg.data.subset
        rows = subset_indices(len(ds), sub.n if sub else None, sub.mode if sub else "first", sub.seed if sub else 0)
        split_seed = tc.seed if cfg.data.split_seed is None else cfg.data.split_seed
        split = make_split(rows, cfg.data.val_fraction, split_seed, n_total=len(ds))
        split.save(run_dir / "splits.json")
    if split.n_total != len(ds):
        raise DataError(
            f"{run_dir / 'splits.json'}: split made for {split.n_total} spectra, but {cfg.data.path} has {len(ds)}"
        )
    decoder = None
    if cfg.stage == "decoder":
        if ds.params is None:
            raise DataError(f"{cfg.data.path}: the decoder stage needs 'params' in the dataset")
        if resume:
            transforms = load_transforms(run_dir / "transforms.json")
        else:
            log_params = ds.log_params if cfg.data.log_params is None else cfg.data.log_params
            train_ds = ds.subset(split.train)
            transforms = Transforms.fit(train_ds.spectra, train_ds.params, log_params, ds.param_names)
    else:
        frozen = load_run(cfg.encoder.decoder_run, device=device)
        if frozen.stage != "decoder":
            raise ConfigError(
                f"encoder.decoder_run: {frozen.path} is not a decoder run (its run.json says stage {frozen.stage!r})"
            )
        decoder, transforms = frozen.network, frozen.transforms
        _freeze(decoder)
        # the encoder's data must match the decoder's spectra and (where present) parameters
        n_out, n_in = math.prod(decoder.output_shape), frozen.input_shape[0]
        if ds.spectra.shape[1] != n_out:
            raise DataError(
                f"{cfg.data.path}: spectra have {ds.spectra.shape[1]} bins, but the decoder in {frozen.path} makes {n_out}"
            )
        if ds.params is not None and ds.params.shape[1] != n_in:
            raise DataError(
                f"{cfg.data.path}: {ds.params.shape[1]} parameters, but the decoder in {frozen.path} takes {n_in}"
            )
    transforms.save(run_dir / "transforms.json")
    x_train, p_train = _tensors(ds, split.train, transforms, device)  # [N, C], [N, P] | None
    x_val, p_val = _tensors(ds, split.val, transforms, device)
    n_bins, n_params = x_train.shape[1], len(transforms.params.mean)

    # -- model -------------------------------------------------------------------------------
    in_shape, out_shape = ((n_params,), (n_bins,)) if cfg.stage == "decoder" else ((n_bins,), (n_params,))
    net_source: tp.Any = run_dir / "network.json" if resume else _network_source(cfg, n_bins, n_params)
    model = _build(net_source, in_shape, out_shape, where=_network_where(cfg, resume, run_dir)).to(device)
    write_json(run_dir / "network.json", model.config)
    write_json(
        run_dir / "run.json",
        {
            "stage": cfg.stage,
            "input_shape": list(in_shape),
            "output_shape": list(out_shape),
            "param_names": list(transforms.param_names or ds.param_names),
            "energy_centres": np.asarray(ds.energy_centres).tolist(),
            "energy_widths": np.asarray(ds.energy_widths).tolist(),
            "units": ds.units,
            "fspnet_version": __version__,
        },
    )
    write_json(run_dir / "config.json", to_dict(cfg))
    if decoder is not None:
        with atomic_path(run_dir / "decoder.safetensors") as tmp:
            save_file(_cpu_state(decoder), str(tmp))
        write_json(run_dir / "decoder_network.json", decoder.config)
    n_weights = sum(p.numel() for p in model.parameters())
    log.info("%s: %d weights, %d training and %d validation spectra", cfg.stage, n_weights, len(x_train), len(x_val))

    def losses(idx: torch.Tensor | slice, x: torch.Tensor, p: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The stage's loss on rows ``idx`` of ``x`` [N, C] and ``p`` [N, P]."""
        if cfg.stage == "decoder":
            return {"loss": F.mse_loss(model(p[idx]).flatten(1), x[idx])}
        xb = x[idx]  # [B, C]
        z = model(xb).flatten(1)  # [B, P]
        recon = F.mse_loss(decoder(z).flatten(1), xb)
        out = {"recon_loss": recon, "loss": cfg.encoder.recon_weight * recon}
        if p is not None:
            out["latent_loss"] = F.mse_loss(z, p[idx])
            out["loss"] = out["loss"] + cfg.encoder.latent_weight * out["latent_loss"]
        return out

    # -- optimiser, scheduler and the multi-stage schedule -------------------------------------
    # stage k trains at learning_rate / 10**k with its own patience and most epochs
    schedule = [(tc.epochs, tc.patience)] + [(s.epochs, s.patience) for s in tc.stages]
    optimizer, scheduler = _optimizer(model, tc, stage=0)
    shuffle = torch.Generator(device=device)
    shuffle.manual_seed(tc.seed)
    state = {"epoch": 0, "stage": 0, "stage_epoch": 0, "bad_epochs": 0, "best_val_loss": math.inf, "best_epoch": 0}
    history: list[dict[str, float]] = []

    # -- resume: weights, optimiser, scheduler, counters, history and RNG states ----------------
    if resume:
        ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        state.update(ckpt["state"])
        optimizer, scheduler = _optimizer(model, tc, stage=int(state["stage"]))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history = list(ckpt["history"])
        _set_rng(ckpt["rng"], shuffle)
        log.info("resumed at epoch %d (stage %d)", state["epoch"], state["stage"])
    write_json(run_dir / "provenance.json", _provenance(run_dir, tc.seed, device, resume, int(state["epoch"])))

    # -- the epoch loop ----------------------------------------------------------------------
    stopped = "max_epochs"
    while True:
        max_epochs, patience = schedule[int(state["stage"])]
        stalled = patience is not None and state["bad_epochs"] >= patience
        if stalled or state["stage_epoch"] >= max_epochs:
            if int(state["stage"]) + 1 < len(schedule):
                # next stage: restart from the best weights at a tenth of the learning rate
                state.update(stage=int(state["stage"]) + 1, stage_epoch=0, bad_epochs=0)
                if (run_dir / BEST).is_file():
                    model.load_state_dict(_load_best(run_dir, device))
                optimizer, scheduler = _optimizer(model, tc, stage=int(state["stage"]))
                log.info("stage %d: lr %.3g", state["stage"], optimizer.param_groups[0]["lr"])
                continue
            stopped = "early_stopping" if stalled else "max_epochs"
            break

        epoch = int(state["epoch"]) + 1
        t0 = time.perf_counter()
        train_loss = _train_epoch(
            model, losses, x_train, p_train, tc.batch_size, optimizer, tc.grad_clip, shuffle,
            desc=f"{cfg.stage} epoch {epoch}", progress=tc.progress,
        )  # fmt: skip
        val = _evaluate(model, losses, x_val, p_val)
        scheduler.step(val["loss"])

        improved = val["loss"] < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val["loss"], best_epoch=epoch, bad_epochs=0)
            with atomic_path(run_dir / BEST) as tmp:
                save_file(_cpu_state(model), str(tmp))
        else:
            state["bad_epochs"] += 1
        state["epoch"], state["stage_epoch"] = epoch, state["stage_epoch"] + 1
        metrics = {
            "epoch": epoch,
            "stage": int(state["stage"]),
            "train_loss": train_loss,
            "val_loss": val["loss"],
            **{f"val_{k}": v for k, v in val.items() if k != "loss"},
            "lr": optimizer.param_groups[0]["lr"],
            "best_val_loss": state["best_val_loss"],
            "time_s": time.perf_counter() - t0,
        }
        history.append(metrics)
        log.info(
            "epoch %d: train %.4g  val %.4g%s  lr %.2g  (%.1f s)",
            epoch, train_loss, val["loss"], "  *" if improved else "", metrics["lr"], metrics["time_s"],
        )  # fmt: skip

        requests = set(callback(epoch, dict(metrics)) or ()) if callback is not None else set()
        unknown = requests - {"stop", "checkpoint"}
        if unknown:
            log.warning("callback asked for %s; only 'stop' and 'checkpoint' are understood", sorted(unknown))
        _write_metrics(run_dir, history, int(state["best_epoch"]))
        every = tc.checkpoint_every
        if "checkpoint" in requests or "stop" in requests or (every and epoch % every == 0):
            _save_checkpoint(run_dir, model, optimizer, scheduler, state, history, shuffle, cfg)
        if "stop" in requests:
            stopped = "callback"
            break
        if not (math.isfinite(train_loss) and math.isfinite(val["loss"])):
            log.warning("epoch %d: the loss is not finite (train %s, val %s); stopping", epoch, train_loss, val["loss"])
            stopped = "early_stopping"
            break

    # -- finish: last checkpoint, plots, summary -----------------------------------------------
    _save_checkpoint(run_dir, model, optimizer, scheduler, state, history, shuffle, cfg)
    _write_metrics(run_dir, history, int(state["best_epoch"]))
    if tc.plots and history:
        _plot(run_dir, cfg, history, int(state["best_epoch"]), model, decoder, ds, split, transforms, device)
    best = next((h for h in history if h["epoch"] == state["best_epoch"]), history[-1] if history else {})
    summary = {
        **best,
        "best_val_loss": state["best_val_loss"],
        "final_train_loss": history[-1]["train_loss"] if history else math.nan,
        "final_val_loss": history[-1]["val_loss"] if history else math.nan,
    }
    log.info(
        "%s: stopped (%s) after %d epochs; best val %.4g at epoch %d",
        cfg.stage, stopped, state["epoch"], state["best_val_loss"], state["best_epoch"],
    )  # fmt: skip
    return {
        "metrics": summary,
        "best_epoch": int(state["best_epoch"]),
        "epochs": int(state["epoch"]),
        "run_dir": str(run_dir),
        "stopped": stopped,
    }


# --------------------------------------------------------------------------------------------
# the hot path


def _train_epoch(
    model: nn.Module,
    losses: tp.Callable[..., dict[str, torch.Tensor]],
    x: torch.Tensor,
    p: torch.Tensor | None,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None,
    shuffle: torch.Generator,
    *,
    desc: str = "",
    progress: bool = True,
) -> float:
    """One pass over the training tensors in random batches; returns the mean loss."""
    model.train()
    n = len(x)
    # the permutation is made on the data's device, so a GPU epoch never copies from the host
    perm = torch.randperm(n, generator=shuffle, device=x.device)
    starts = range(0, n, batch_size)
    if n % batch_size == 1 and n > 1:
        starts = range(0, n - 1, batch_size)  # a batch of one breaks batch norm; drop that spectrum
    total = torch.zeros((), device=x.device)
    seen = 0
    for i in tqdm(starts, desc=desc, leave=False, disable=None if progress else True, unit="batch"):
        idx = perm[i : i + batch_size]  # [B]
        loss = losses(idx, x, p)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        # accumulate on the device: .item() per batch would sync the GPU every step
        total += loss.detach() * len(idx)
        seen += len(idx)
    return float(total) / max(seen, 1)


@torch.no_grad()
def _evaluate(
    model: nn.Module, losses: tp.Callable[..., dict[str, torch.Tensor]], x: torch.Tensor, p: torch.Tensor | None
) -> dict[str, float]:
    """Mean of each loss term over ``x`` in large batches, with the model in eval mode."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    for i in range(0, len(x), EVAL_BATCH):
        batch = losses(slice(i, i + EVAL_BATCH), x, p)
        n = min(EVAL_BATCH, len(x) - i)
        for k, v in batch.items():
            sums[k] = sums.get(k, 0) + v * n
    return {k: float(v) / len(x) for k, v in sums.items()}


# --------------------------------------------------------------------------------------------
# helpers


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device: {name!r} asked for, but CUDA is not available; use auto or cpu")
    return torch.device(name)


def _ensure_dataset(cfg: Config) -> Path:
    """Return ``data.path``, making it once with :mod:`fspnet.synthesize` if it is missing.

    Several processes (hpo workers) may start at once: they queue on an exclusive lock beside
    the file; the first makes it (written to a temporary file, then renamed), the others find
    it made when they get the lock.
    """
    path = Path(cfg.data.path)
    if path.is_file():
        return path
    gen = cfg.data.generate
    if gen is None:
        raise DataError(
            f"{path}: dataset file not found; set data.generate: {{n: ..., seed: ...}} to make it, "
            "or make it with `python -m fspnet.synthesize`"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # losers wait here until the winner has renamed the file
        try:
            if not path.is_file():
                from fspnet import synthesize  # the forward model is only needed to make data

                log.info("%s: making %d spectra with fspnet.synthesize (seed %d)", path, gen.n, gen.seed)
                synthesize.synthesize(gen.config or None, n=gen.n, seed=gen.seed, out=path, progress=cfg.training.progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def _tensors(
    ds: SpectrumDataset, rows: np.ndarray, transforms: Transforms, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Transformed float32 spectra [N, C] and parameters [N, P] (or None) of ``rows``, on ``device``."""
    x = transforms.spectra(torch.from_numpy(np.ascontiguousarray(ds.spectra[rows])).to(device, torch.float64))
    p = None
    if ds.params is not None and transforms.params is not None:
        p = transforms.params(torch.from_numpy(np.ascontiguousarray(ds.params[rows])).to(device, torch.float64))
        p = p.float().contiguous()
    return x.float().contiguous(), p


def _network_source(cfg: Config, n_bins: int, n_params: int) -> dict[str, tp.Any] | str:
    """The stage's network JSON path, or a config generated from its architecture knobs."""
    section = cfg.decoder if cfg.stage == "decoder" else cfg.encoder
    if section.network is not None:
        return section.network
    from fspnet import nets

    # the data fix the output size unless the knobs say otherwise
    if cfg.stage == "decoder":
        make, arch = nets.decoder_config, {"n_bins": n_bins, **section.architecture}
    else:
        make, arch = nets.encoder_config, {"n_params": n_params, **section.architecture}
    try:
        return make(**arch)
    except NetworkConfigError as e:
        raise NetworkConfigError(f"{cfg.stage}.architecture: {e}") from None


def _network_where(cfg: Config, resume: bool, run_dir: Path) -> str:
    if resume:
        return str(run_dir / "network.json")
    section = cfg.decoder if cfg.stage == "decoder" else cfg.encoder
    return f"{cfg.stage}.network ({section.network})" if section.network else f"{cfg.stage}.architecture"


def _build(source: tp.Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...], where: str) -> nn.Module:
    from fspnet.nets import build_network

    model = build_network(source if isinstance(source, dict) else str(source), in_shape)
    got = tuple(model.output_shape)
    if math.prod(got) != math.prod(out_shape):
        raise ConfigError(f"{where}: the network maps {in_shape} to {got}, but this stage needs {out_shape}")
    return model


def _freeze(decoder: nn.Module) -> None:
    """Fix the decoder's weights and put it in eval mode (no dropout, batch-norm statistics fixed)."""
    decoder.requires_grad_(False)
    decoder.eval()
    # cuDNN runs RNN backward only in training mode; an RNN without dropout behaves the same in
    # both modes, so train mode is harmless there and lets gradients reach the encoder on a GPU.
    for m in decoder.modules():
        if isinstance(m, nn.RNNBase):
            m.dropout = 0.0
            m.train()


def _optimizer(model: nn.Module, tc: tp.Any, stage: int) -> tuple[torch.optim.Optimizer, tp.Any]:
    params = list(model.parameters())
    # the fused kernel updates all weights in one call: ~5x faster than the per-tensor loop on CPU
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    optimizer = torch.optim.AdamW(params, lr=tc.learning_rate / 10**stage, weight_decay=tc.weight_decay, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=tc.lr_factor, patience=tc.lr_patience, min_lr=tc.min_lr
    )
    return optimizer, scheduler


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _load_best(run_dir: Path, device: torch.device) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / BEST), device=str(device))


def _rng_state(shuffle: torch.Generator) -> dict[str, tp.Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": shuffle.get_state(),
    }


def _set_rng(rng: dict[str, tp.Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    shuffle.set_state(rng["shuffle"])


def _save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: tp.Any,
    state: dict[str, tp.Any],
    history: list[dict[str, float]],
    shuffle: torch.Generator,
    cfg: Config,
) -> None:
    """Write ``last.pt`` atomically: plain state dicts, counters, history and RNG states."""
    ckpt = {
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in state.items()},
        "history": history,
        "rng": _rng_state(shuffle),
        "config": to_dict(cfg),
        "fspnet_version": __version__,
    }
    with atomic_path(run_dir / CHECKPOINT) as tmp:
        torch.save(ckpt, tmp)


def _write_metrics(run_dir: Path, history: list[dict[str, float]], best_epoch: int) -> None:
    keys: list[str] = []
    for h in history:
        keys += [k for k in h if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(run_dir / "metrics.csv", buf.getvalue())
    best = next((h for h in history if h["epoch"] == best_epoch), None)
    write_json(run_dir / "metrics.json", {"best_epoch": best_epoch, "best": best, "history": history})


def _provenance(run_dir: Path, seed: int, device: torch.device, resume: bool, epoch: int) -> dict[str, tp.Any]:
    prov = collect_provenance(seed=seed, device=str(device), extra={"resumed_at_epoch": epoch if resume else None})
    previous = run_dir / "provenance.json"
    if resume and previous.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            old = json.loads(previous.read_text())
            prov["previous"] = old.pop("previous", []) + [old]
    return prov


def _plot(
    run_dir: Path,
    cfg: Config,
    history: list[dict[str, float]],
    best_epoch: int,
    model: nn.Module,
    decoder: nn.Module | None,
    ds: SpectrumDataset,
    split: tp.Any,
    transforms: Transforms,
    device: torch.device,
) -> None:
    """loss_curve.png, and reconstruction.png of four validation spectra with the best weights."""
    from fspnet._plots import plot_loss_curve, plot_reconstruction

    plot_loss_curve(history, run_dir / "loss_curve.png", best_epoch=best_epoch)
    if not (run_dir / BEST).is_file():
        return  # no epoch ever improved (a non-finite loss): nothing worth reconstructing
    best = copy.deepcopy(model)
    best.load_state_dict(_load_best(run_dir, device))
    best.eval()
    rows = split.val[:4]
    x, p = _tensors(ds, rows, transforms, device)
    with torch.no_grad():
        out = best(p).flatten(1) if cfg.stage == "decoder" else decoder(best(x).flatten(1)).flatten(1)
    recon = transforms.spectra.inverse(out.double()).cpu().numpy()
    names = [ds.names[i] for i in rows] if ds.names is not None else [f"row {i}" for i in rows]
    title = "decoder(params)" if cfg.stage == "decoder" else "decoder(encoder(spectrum))"
    plot_reconstruction(
        np.asarray(ds.energy_centres), ds.spectra[rows], recon, run_dir / "reconstruction.png", names=names, title=title
    )


# --------------------------------------------------------------------------------------------
# reading a run directory back


@dataclasses.dataclass
class Run:
    """A trained network read back from a run directory (see the module docstring).

    Attributes:
        path: the run directory.
        stage: ``"decoder"`` or ``"encoder"``.
        network: the model with its best weights, in eval mode.
        transforms: the fitted transforms.
        input_shape: the network input shape without the batch dimension.
        param_names: parameter names.
        energy_centres: [C] bin centres in keV (None if unknown).
        config: the training config (empty if the folder has none).
        decoder: for an encoder run, the frozen decoder (None if absent).
    """

    path: Path
    stage: str
    network: nn.Module
    transforms: Transforms
    input_shape: tuple[int, ...]
    param_names: list[str]
    energy_centres: np.ndarray | None
    config: dict[str, tp.Any]
    decoder: nn.Module | None = None


def load_run(run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> Run:
    """Read a run directory (or a folder of shipped weights laid out the same way).

    Needs ``run.json``, ``network.json``, ``best.safetensors`` and ``transforms.json``; an
    encoder run's ``decoder.safetensors`` + ``decoder_network.json`` are loaded when present.
    Nothing is unpickled.

    Raises:
        DataError: naming the missing or malformed file.
    """
    from fspnet.nets import build_network

    path = Path(os.fspath(run_dir))
    for name in ("run.json", "network.json", BEST, "transforms.json"):
        if not (path / name).is_file():
            raise DataError(f"{path}: not a run directory; {name} is missing")
    try:
        info = json.loads((path / "run.json").read_text())
        input_shape = tuple(int(i) for i in info["input_shape"])
        stage = str(info["stage"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path / 'run.json'}: malformed ({e})") from None
    network = build_network(str(path / "network.json"), input_shape).to(device)
    network.load_state_dict(load_file(str(path / BEST), device=str(device)))
    network.eval()
    decoder = None
    if (path / "decoder.safetensors").is_file() and (path / "decoder_network.json").is_file():
        decoder = build_network(str(path / "decoder_network.json"), tuple(info["output_shape"])).to(device)
        decoder.load_state_dict(load_file(str(path / "decoder.safetensors"), device=str(device)))
        decoder.eval()
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    centres = info.get("energy_centres")
    return Run(
        path=path,
        stage=stage,
        network=network,
        transforms=load_transforms(path / "transforms.json"),
        input_shape=input_shape,
        param_names=list(info.get("param_names", [])),
        energy_centres=None if centres is None else np.asarray(centres),
        config=config,
        decoder=decoder,
    )


# --------------------------------------------------------------------------------------------
# command line


def read_hyperparams(path: str | os.PathLike[str]) -> dict[str, tp.Any]:
    """Read dotted-path overrides from JSON: ``{"training.learning_rate": 1e-3, ...}``.

    hpo's ``best_params.json`` (``{"params": {name: value}, "paths": {name: dotted.path}}``)
    is accepted too: each value goes to its name's path (params without a path are skipped
    with a warning).

    Raises:
        ConfigError: naming the file when it is missing or not such a mapping.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: hyperparameter file not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of dotted config paths to values")
    if isinstance(data.get("params"), dict) and isinstance(data.get("paths"), dict):
        missing = [k for k in data["params"] if k not in data["paths"]]
        if missing:
            log.warning("%s: params %s have no config path in 'paths'; ignoring them", p, missing)
        return {data["paths"][k]: v for k, v in data["params"].items() if k in data["paths"]}
    return data


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m fspnet.train`` / ``fspnet-train``."""
    parser = argparse.ArgumentParser(prog="fspnet-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    parser.add_argument("--stage", choices=("decoder", "encoder"), help="network to train (overrides the config)")
    parser.add_argument("--run-dir", help="output folder (default: runs/<stage>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a dotted config key, e.g. training.learning_rate=1e-3 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--hyperparams", help="JSON of dotted config keys to values (e.g. hpo's best_params.json)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        overrides = read_hyperparams(args.hyperparams) if args.hyperparams else {}
        overrides.update(parse_overrides(args.overrides))
        if args.stage:
            overrides["stage"] = args.stage
        if args.run_dir:
            overrides["run_dir"] = args.run_dir
        if args.resume:
            overrides["resume"] = True
        config = load_config(args.config, overrides)
        result = train(config)
    except (ConfigError, DataError) as e:
        parser.exit(2, f"fspnet-train: error: {e}\n")
    m = result["metrics"]
    print(
        f"{config['stage']}: {result['epochs']} epochs ({result['stopped']}); best val_loss "
        f"{m['best_val_loss']:.4g} at epoch {result['best_epoch']}; run dir {result['run_dir']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
