"""Train the FSP-Net decoder or encoder: config dict in, per-epoch metrics out, artifacts in a run dir.

The decoder learns spectrum = decoder(params) with a supervised MSE on synthetic spectra. The
encoder learns params = encoder(spectrum) through the *frozen* decoder of an earlier run:
``loss = recon_weight * MSE(decoder(encoder(x)), x) + latent_weight * MSE(encoder(x), params)``
(the second term only where the dataset has parameters).

:func:`train` reads top to bottom: config, seed and device; data (tensors on the device,
transforms fitted on the training split); model; optimiser and scheduler; resume; then the
epoch loop, which calls ``callback(epoch, metrics)`` after every epoch. The callback may
return ``"stop"`` and/or ``"checkpoint"``. An ``interrupt`` event (set by a signal handler on
preemption) ends training after the current batch with a checkpoint that resumes mid-epoch.

The schedule is the first stage, the extra ``training.stages`` (each from the best weights at a
tenth of the learning rate) and, when ``training.fine_tune_worst`` and ``fine_tune_epochs`` are
set, NNPowerspectra's last stage: the N training spectra with the worst loss under the best
weights so far are chosen once (:func:`select_worst`) and trained on alone, at a tenth of the
last stage's learning rate, while validation stays on the whole validation split. Within a
stage the learning rate follows ``training.lr_schedule``: FSP-Net's ReduceLROnPlateau, or a half
cosine down to ``min_lr`` over the stage's epochs (better for a fixed epoch budget).

The run directory's files (names, writing, loading) belong to :mod:`fspnet.rundir`; nothing
in it changes until the new run has been built and validated.

Command line::

    python -m fspnet.train --config configs/fspnet.yaml --stage decoder
    python -m fspnet.train --config configs/fspnet.yaml --stage encoder --set training.epochs=50
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import fcntl
import logging
import math
import threading
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from fspnet import __version__
from fspnet.config import Config, from_dict, load_config, parse_overrides, to_dict
from fspnet.data import SpectrumDataset, Transforms, load_split, load_transforms, make_split, subset_indices
from fspnet.data._dataset import read_dataset_cached
from fspnet.errors import ConfigError, DataError, NetworkConfigError, TrainingError
from fspnet.nets import Network
from fspnet.rundir import (
    BEST,
    CHECKPOINT,
    NETWORK,
    SPLITS,
    TRANSFORMS,
    Run,
    RunDir,
    hyperparams_config,
    load_run,
    read_hyperparams,
)  # fmt: skip
from runtools.provenance import collect_provenance

__all__ = ["Callback", "Run", "load_run", "main", "read_hyperparams", "select_worst", "train"]

log = logging.getLogger("fspnet.train")

#: Called after every epoch with ``(epoch, metrics)``; may return ``{"stop", "checkpoint"}``.
Callback = tp.Callable[[int, dict[str, float]], tp.Iterable[str] | None]

EVAL_BATCH = 4096  # spectra per forward pass when evaluating (no gradients kept)
_CKPT_KEYS = ("model", "optimizer", "scheduler", "state", "history", "rng")


def train(
    config: tp.Mapping[str, tp.Any],
    callback: Callback | None = None,
    *,
    interrupt: threading.Event | None = None,
) -> dict[str, tp.Any]:
    """Train the network of ``config["stage"]`` and write its artifacts into ``config["run_dir"]``.

    Args:
        config: a (possibly partial) :class:`fspnet.config.Config` as a plain dict, e.g. from
            :func:`fspnet.config.load_config`; missing keys take their defaults.
        callback: called after every epoch with ``(epoch, metrics)``; ``metrics`` holds
            ``epoch``, ``stage``, ``train_loss``, ``val_loss``, ``lr``, ``best_val_loss``,
            ``time_s`` (and ``val_recon_loss``, ``val_latent_loss`` for the encoder). It may
            return a collection holding ``"stop"`` (end training now) and/or ``"checkpoint"``
            (write the last checkpoint now).
        interrupt: when set (e.g. by a SIGTERM handler), training ends after the current batch:
            ``last.pt`` then holds the position inside the epoch, and ``resume: true``
            continues from that batch with the same per-epoch metrics as an uninterrupted run.

    Returns:
        ``{"metrics": {...}, "best_epoch": int, "epochs": int, "run_dir": str, "stopped": str}``
        where ``metrics`` are those of the best epoch plus ``best_val_loss``,
        ``final_train_loss`` and ``final_val_loss``, and ``stopped`` is
        ``"early_stopping"`` (patience ran out in the last stage), ``"callback"``,
        ``"max_epochs"`` or ``"interrupted"``.

    Raises:
        ConfigError: for an invalid config (every bad key path listed), or a ``run_dir`` that
            holds an earlier run's results without ``resume`` or ``overwrite``.
        DataError: for a missing or unusable dataset, or an unreadable checkpoint.
        TrainingError: when a training or validation loss is not finite (epoch, batch, loss).

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
    rd = RunDir(run_dir)
    resume = cfg.resume and rd.has_checkpoint()
    if cfg.resume and not resume:
        log.warning("%s: no %s to resume from; starting a new run", run_dir, CHECKPOINT)
    if not resume:  # a resume request without a checkpoint may replace what is there
        rd.check_can_start(overwrite=cfg.overwrite or cfg.resume)
    ckpt = rd.load_checkpoint(_CKPT_KEYS) if resume else None  # a bad file fails before any work
    device = _device(tc.device)
    torch.manual_seed(tc.seed)
    log.info("%s %s run in %s on %s", "resuming" if resume else "starting", cfg.stage, run_dir, device)

    # -- data: the file (made once if missing), split, transforms, tensors on the device --------
    # nothing is written into run_dir until the model is built: a run that cannot start
    # leaves an earlier run's files as they were
    ds = read_dataset_cached(_ensure_dataset(cfg))
    if resume:
        split = load_split(run_dir / SPLITS)
    else:
        sub = cfg.data.subset
        rows = subset_indices(len(ds), sub.n if sub else None, sub.mode if sub else "first", sub.seed if sub else 0)
        split_seed = tc.seed if cfg.data.split_seed is None else cfg.data.split_seed
        split = make_split(rows, cfg.data.val_fraction, split_seed, n_total=len(ds))
    if split.n_total != len(ds):
        raise DataError(f"{run_dir / SPLITS}: split made for {split.n_total} spectra, but {cfg.data.path} has {len(ds)}")
    decoder: Network | None = None
    if cfg.stage == "decoder":
        if ds.params is None:
            raise DataError(f"{cfg.data.path}: the decoder stage needs 'params' in the dataset")
        if resume:
            transforms = load_transforms(run_dir / TRANSFORMS)
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
        if not isinstance(frozen.network, Network):
            raise ConfigError(
                f"encoder.decoder_run: {frozen.path} is an ensemble (ensemble.json); train the encoder through one of "
                "its member runs"
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
            raise DataError(f"{cfg.data.path}: {ds.params.shape[1]} parameters, but the decoder in {frozen.path} takes {n_in}")
    x_train, p_train = _tensors(ds, split.train, transforms, device)  # [N, C], [N, P] | None
    x_val, p_val = _tensors(ds, split.val, transforms, device)
    assert transforms.params is not None  # both stages fit or load parameter transforms
    n_bins, n_params = x_train.shape[1], len(transforms.params.mean)

    # -- model -------------------------------------------------------------------------------
    in_shape, out_shape = ((n_params,), (n_bins,)) if cfg.stage == "decoder" else ((n_bins,), (n_params,))
    net_source: tp.Any = run_dir / NETWORK if resume else _network_source(cfg, n_bins, n_params)
    model = _build(net_source, in_shape, out_shape, where=_network_where(cfg, resume, run_dir)).to(device)

    # -- optimiser, scheduler and the multi-stage schedule -------------------------------------
    # stage k trains at learning_rate / 10**k with its own patience and most epochs; the last
    # one may be the fine-tuning on the worst spectra (no patience: it runs its epochs)
    schedule = [(tc.epochs, tc.patience)] + [(s.epochs, s.patience) for s in tc.stages]
    fine_tune_stage = len(schedule) if tc.fine_tune_worst > 0 and tc.fine_tune_epochs > 0 else None
    if fine_tune_stage is not None:
        schedule.append((tc.fine_tune_epochs, None))
    optimizer, scheduler = _optimizer(model, tc, 0, schedule[0][0])
    shuffle = torch.Generator(device=device)
    shuffle.manual_seed(tc.seed)
    state = {"epoch": 0, "stage": 0, "stage_epoch": 0, "bad_epochs": 0, "best_val_loss": math.inf, "best_epoch": 0}
    history: list[dict[str, float]] = []
    partial: _EpochState | None = None  # an epoch interrupted part-way, continued first
    worst: torch.Tensor | None = None  # [N] training rows of the fine-tuning stage, once chosen

    # -- resume: weights, optimiser, scheduler, counters, history, RNG states, epoch position --
    if ckpt is not None:
        try:
            state.update(ckpt["state"])
            stage = int(state["stage"])
            optimizer, scheduler = _optimizer(model, tc, stage, schedule[stage][0])
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            history = list(ckpt["history"])
            _set_rng(ckpt["rng"], shuffle)
            partial = _EpochState.from_dict(ckpt.get("partial"), device)
            if ckpt.get("worst") is not None:
                worst = ckpt["worst"].to(device)
            if int(state["stage"]) == fine_tune_stage and worst is None:
                raise ValueError("it is in the fine-tuning stage but holds no 'worst' rows")
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{run_dir / CHECKPOINT}: does not fit this run's network or config ({reason})") from None
        where = f", batch {partial.batch} of {partial.n_batches}" if partial else ""
        log.info("resumed at epoch %d%s (stage %d)", state["epoch"] + (1 if partial else 0), where, state["stage"])

    # -- everything is built and valid: now the run directory changes --------------------------
    if resume:
        rd.resume(to_dict(cfg))
    else:
        rd.start(
            config=to_dict(cfg),
            info={
                "stage": cfg.stage,
                "input_shape": list(in_shape),
                "output_shape": list(out_shape),
                "param_names": list(transforms.param_names or ds.param_names),
                "energy_centres": np.asarray(ds.energy_centres).tolist(),
                "energy_widths": np.asarray(ds.energy_widths).tolist(),
                "units": ds.units,
                "fspnet_version": __version__,
            },
            network=model.config,
            transforms=transforms,
            split=split,
            decoder=decoder,
            decoder_network=None if decoder is None else decoder.config,
        )
    rd.write_provenance(_provenance(rd, tc.seed, device, resume, int(state["epoch"])))
    n_weights = sum(p.numel() for p in model.parameters())
    log.info("%s: %d weights, %d training and %d validation spectra", cfg.stage, n_weights, len(x_train), len(x_val))

    def losses(
        idx: torch.Tensor | slice, x: torch.Tensor, p: torch.Tensor | None, reduce: bool = True
    ) -> dict[str, torch.Tensor]:
        """The stage's loss on rows ``idx`` of ``x`` [N, C] and ``p`` [N, P]: scalars, or [B] per row."""

        def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.mse_loss(a, b) if reduce else ((a - b) ** 2).mean(1)

        if cfg.stage == "decoder":
            assert p is not None  # checked when the data were read
            return {"loss": mse(model(p[idx]).flatten(1), x[idx])}
        assert decoder is not None  # the encoder stage loads its frozen decoder
        xb = x[idx]  # [B, C]
        z = model(xb).flatten(1)  # [B, P]
        recon = mse(decoder(z).flatten(1), xb)
        out = {"recon_loss": recon, "loss": cfg.encoder.recon_weight * recon}
        if p is not None:
            out["latent_loss"] = mse(z, p[idx])
            out["loss"] = out["loss"] + cfg.encoder.latent_weight * out["latent_loss"]
        return out

    def checkpoint(epoch_state: _EpochState | None = None) -> None:
        rd.save_checkpoint(_checkpoint(model, optimizer, scheduler, state, history, shuffle, cfg, epoch_state, worst))

    # -- the epoch loop ----------------------------------------------------------------------
    stopped = "max_epochs"
    while True:
        max_epochs, patience = schedule[int(state["stage"])]
        stalled = patience is not None and state["bad_epochs"] >= patience
        if stalled or state["stage_epoch"] >= max_epochs:
            partial = None
            if int(state["stage"]) + 1 < len(schedule):
                # next stage: restart from the best weights at a tenth of the learning rate
                state.update(stage=int(state["stage"]) + 1, stage_epoch=0, bad_epochs=0)
                if (run_dir / BEST).is_file():
                    model.load_state_dict(rd.load_best(device))
                stage = int(state["stage"])
                optimizer, scheduler = _optimizer(model, tc, stage, schedule[stage][0])
                log.info("stage %d: lr %.3g", state["stage"], optimizer.param_groups[0]["lr"])
                if state["stage"] == fine_tune_stage:
                    # chosen once, from the best weights, before anything of the stage runs
                    worst = select_worst(_per_row_loss(model, losses, x_train, p_train), tc.fine_tune_worst)
                    log.info(
                        "stage %d: fine-tuning on the %d worst of %d training spectra", state["stage"], len(worst), len(x_train)
                    )
                continue
            stopped = "early_stopping" if stalled else "max_epochs"
            break

        if interrupt is not None and interrupt.is_set() and partial is None:
            checkpoint()  # between epochs: nothing of the next one has run
            log.warning("interrupted after epoch %d; checkpoint in %s", state["epoch"], run_dir / CHECKPOINT)
            stopped = "interrupted"
            break
        epoch = int(state["epoch"]) + 1
        t0 = time.perf_counter()
        # the fine-tuning stage trains on its worst rows only; validation stays on the whole split
        x_fit, p_fit = x_train, p_train
        if state["stage"] == fine_tune_stage and worst is not None:
            x_fit, p_fit = x_train[worst], None if p_train is None else p_train[worst]
        es = partial or _EpochState.begin(len(x_fit), tc.batch_size, shuffle)
        partial = None
        train_loss = _train_epoch(
            model, losses, x_fit, p_fit, tc.batch_size, optimizer, tc.grad_clip, shuffle,
            desc=f"{cfg.stage} epoch {epoch}", progress=tc.progress, epoch_state=es, interrupt=interrupt,
        )  # fmt: skip
        es.elapsed_s += time.perf_counter() - t0
        _check_train_loss(es, epoch, run_dir)
        if train_loss is None:  # interrupted: keep the position inside the epoch and return
            checkpoint(es)
            log.warning(
                "epoch %d: interrupted after batch %d of %d; checkpoint in %s",
                epoch,
                es.batch,
                es.n_batches,
                run_dir / CHECKPOINT,
            )
            stopped = "interrupted"
            break
        t0 = time.perf_counter()
        val = _evaluate(model, losses, x_val, p_val)
        bad = {k: v for k, v in val.items() if not math.isfinite(v)}
        if bad:
            terms = ", ".join(f"{'val_loss' if k == 'loss' else 'val_' + k} = {v}" for k, v in bad.items())
            raise TrainingError(
                f"{run_dir}: epoch {epoch}: the validation loss is not finite ({terms}); training stopped "
                f"with the best weights of epoch {state['best_epoch']} kept; lower training.learning_rate "
                "or set training.grad_clip"
            )
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val["loss"])
        else:
            scheduler.step()

        improved = val["loss"] < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val["loss"], best_epoch=epoch, bad_epochs=0)
            rd.save_best(model)
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
            "time_s": es.elapsed_s + time.perf_counter() - t0,
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
        rd.write_metrics(history, int(state["best_epoch"]))
        every = tc.checkpoint_every
        if "checkpoint" in requests or "stop" in requests or (every and epoch % every == 0):
            checkpoint()
        if "stop" in requests:
            stopped = "callback"
            break

    # -- finish: last checkpoint, plots, summary -----------------------------------------------
    if stopped != "interrupted":  # an interruption has a bounded time: its checkpoint is written
        checkpoint()
        rd.write_metrics(history, int(state["best_epoch"]))
        if tc.plots and history:
            _plot(rd, cfg, history, int(state["best_epoch"]), model, decoder, ds, split, transforms, device)
    best = next((h for h in history if h["epoch"] == state["best_epoch"]), history[-1] if history else {})
    summary = {
        **best,
        "best_val_loss": state["best_val_loss"],
        "final_train_loss": history[-1]["train_loss"] if history else math.nan,
        "final_val_loss": history[-1]["val_loss"] if history else math.nan,
    }
    if stopped != "interrupted":
        summary["inference_cost"] = _inference_cost(model, cfg, p_val if cfg.stage == "decoder" else x_val)
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


@dataclasses.dataclass
class _EpochState:
    """Where a training epoch is: its shuffle order, the next batch and the losses so far.

    Saved in ``last.pt`` when training is interrupted, so that resuming continues the epoch at
    the same batch with the same order and accumulators (bitwise on CPU).
    """

    perm: torch.Tensor  # [N] the epoch's order of the training rows
    starts: list[int]  # first row of each batch in ``perm``
    batch: int  # the next batch to run
    total: torch.Tensor  # [] sum of loss * batch size so far
    seen: int  # spectra trained on so far
    batch_loss: torch.Tensor  # [n_batches] each batch's loss (NaN until it runs)
    elapsed_s: float = 0.0

    @property
    def n_batches(self) -> int:
        return len(self.starts)

    @classmethod
    def begin(cls, n: int, batch_size: int, shuffle: torch.Generator) -> _EpochState:
        """A new epoch over ``n`` rows, in an order drawn from ``shuffle``."""
        # the permutation is made on the generator's device, so a GPU epoch never copies from the host
        perm = torch.randperm(n, generator=shuffle, device=shuffle.device)
        starts = list(range(0, n, batch_size))
        if n % batch_size == 1 and n > 1:
            starts = starts[:-1]  # a batch of one breaks batch norm; drop that spectrum
        total = torch.zeros((), device=perm.device)
        return cls(perm, starts, 0, total, 0, torch.full((len(starts),), math.nan, device=perm.device))

    def to_dict(self) -> dict[str, tp.Any]:
        return {
            "perm": self.perm.cpu(), "starts": list(self.starts), "batch": self.batch, "total": self.total.cpu(),
            "seen": self.seen, "batch_loss": self.batch_loss.cpu(), "elapsed_s": float(self.elapsed_s),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: tp.Mapping[str, tp.Any] | None, device: torch.device) -> _EpochState | None:
        if d is None:
            return None
        return cls(
            perm=d["perm"].to(device), starts=[int(s) for s in d["starts"]], batch=int(d["batch"]),
            total=d["total"].to(device), seen=int(d["seen"]), batch_loss=d["batch_loss"].to(device),
            elapsed_s=float(d["elapsed_s"]),
        )  # fmt: skip


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
    epoch_state: _EpochState | None = None,
    interrupt: threading.Event | None = None,
) -> float | None:
    """One pass over the training tensors in random batches; returns the mean loss.

    Continues ``epoch_state`` (a new epoch drawn from ``shuffle`` when None) and updates it
    in place. Returns None, with ``epoch_state`` at the next batch, when ``interrupt`` is set.
    """
    model.train()
    es = epoch_state or _EpochState.begin(len(x), batch_size, shuffle)
    bar = tqdm(total=es.n_batches, initial=es.batch, desc=desc, leave=False, disable=None if progress else True, unit="batch")
    with bar:
        while es.batch < es.n_batches:
            i = es.starts[es.batch]
            idx = es.perm[i : i + batch_size]  # [B]
            loss = losses(idx, x, p)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            # accumulate on the device: .item() per batch would sync the GPU every step
            es.batch_loss[es.batch] = loss.detach()
            es.total += loss.detach() * len(idx)
            es.seen += len(idx)
            es.batch += 1
            bar.update()
            if interrupt is not None and es.batch < es.n_batches and interrupt.is_set():
                return None
    return float(es.total) / max(es.seen, 1)


def select_worst(loss: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` rows with the largest loss, worst first (ties in row order).

    The selection of NNPowerspectra's fine-tuning stage; deterministic, so a resumed or
    repeated run picks the same rows.

    Args:
        loss: [N] one loss per row.
        n: how many rows to keep (all of them when ``n >= N``).

    Returns:
        [min(n, N)] int64 row indices on ``loss``'s device.

    Example:
        >>> select_worst(torch.tensor([0.1, 0.5, 0.3, 0.5]), 2).tolist()
        [1, 3]
    """
    order = torch.sort(loss, descending=True, stable=True).indices
    return order[: max(0, min(int(n), len(loss)))]


@torch.no_grad()
def _per_row_loss(
    model: nn.Module, losses: tp.Callable[..., dict[str, torch.Tensor]], x: torch.Tensor, p: torch.Tensor | None
) -> torch.Tensor:
    """The stage's loss of every row of ``x`` [N, C] (eval mode, large batches): [N]."""
    model.eval()
    out = [losses(slice(i, i + EVAL_BATCH), x, p, reduce=False)["loss"] for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat(out)


def _check_train_loss(es: _EpochState, epoch: int, run_dir: Path) -> None:
    """Raise TrainingError at the first batch of the epoch whose training loss is not finite."""
    bad = (~torch.isfinite(es.batch_loss[: es.batch])).nonzero()
    if len(bad):
        i = int(bad[0])
        raise TrainingError(
            f"{run_dir}: epoch {epoch}, batch {i + 1} of {es.n_batches}: the training loss is "
            f"{float(es.batch_loss[i])}; training stopped (the weights of earlier epochs are kept); "
            "lower training.learning_rate or set training.grad_clip"
        )


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


def _build(source: tp.Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...], where: str) -> Network:
    from fspnet.nets import build_network

    model = build_network(source if isinstance(source, dict) else str(source), in_shape, out_shape)
    got = tuple(model.output_shape)
    if math.prod(got) != math.prod(out_shape):
        raise ConfigError(f"{where}: the network maps {in_shape} to {got}, but this stage needs {out_shape}")
    return model


def _inference_cost(model: Network, cfg: Config, x: torch.Tensor | None) -> float:
    """``model``'s forward time over that of FSP-Net's default network of the stage, on up to
    1,000 validation inputs (:func:`fspnet.nets.relative_cost`): a study can constrain it."""
    from fspnet import nets

    if x is None or len(x) == 0:
        return math.nan
    n_in, n_out = int(x.shape[1]), math.prod(model.output_shape)
    default = nets.decoder_config(n_bins=n_out) if cfg.stage == "decoder" else nets.encoder_config(n_params=n_out)
    reference = _build(default, (n_in,), (n_out,), where="FSP-Net's default network").to(x.device)
    return nets.relative_cost(model, reference, x[:1000])


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


def _optimizer(model: nn.Module, tc: tp.Any, stage: int, epochs: int) -> tuple[torch.optim.Optimizer, tp.Any]:
    """AdamW at ``learning_rate / 10**stage`` and the stage's scheduler (``epochs``: the stage's most)."""
    params = list(model.parameters())
    # the fused kernel updates all weights in one call: ~5x faster than the per-tensor loop on CPU
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    optimizer = torch.optim.AdamW(params, lr=tc.learning_rate / 10**stage, weight_decay=tc.weight_decay, fused=fused or None)
    if tc.lr_schedule == "cosine":
        # stepped once per epoch: the stage's last epoch trains just above min_lr
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=tc.min_lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=tc.lr_factor, patience=tc.lr_patience, min_lr=tc.min_lr
    )
    return optimizer, scheduler


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


def _checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: tp.Any,
    state: dict[str, tp.Any],
    history: list[dict[str, float]],
    shuffle: torch.Generator,
    cfg: Config,
    partial: _EpochState | None = None,
    worst: torch.Tensor | None = None,
) -> dict[str, tp.Any]:
    """The contents of ``last.pt``: state dicts, counters, history, RNG states, epoch position and
    the fine-tuning rows."""
    return {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in state.items()},
        "history": history,
        "rng": _rng_state(shuffle),
        "partial": None if partial is None else partial.to_dict(),
        "worst": None if worst is None else worst.cpu(),
        "config": to_dict(cfg),
        "fspnet_version": __version__,
    }


def _provenance(rd: RunDir, seed: int, device: torch.device, resume: bool, epoch: int) -> dict[str, tp.Any]:
    prov = collect_provenance(seed=seed, device=str(device), extra={"resumed_at_epoch": epoch if resume else None})
    old = rd.read_provenance() if resume else None
    if old is not None:
        prov["previous"] = old.pop("previous", []) + [old]
    return prov


def _plot(
    rd: RunDir,
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
    from fspnet.rundir import LOSS_CURVE, RECONSTRUCTION

    plot_loss_curve(history, rd.path / LOSS_CURVE, best_epoch=best_epoch)
    if not (rd.path / BEST).is_file():
        return  # no epoch ever improved: nothing worth reconstructing
    best = copy.deepcopy(model)
    best.load_state_dict(rd.load_best(device))
    best.eval()
    rows = split.val[:4]
    x, p = _tensors(ds, rows, transforms, device)
    with torch.no_grad():
        if cfg.stage == "decoder":
            out = best(p).flatten(1)
        else:
            assert decoder is not None
            out = decoder(best(x).flatten(1)).flatten(1)
    recon = transforms.spectra.inverse(out.double()).cpu().numpy()
    names = [ds.names[i] for i in rows] if ds.names is not None else [f"row {i}" for i in rows]
    title = "decoder(params)" if cfg.stage == "decoder" else "decoder(encoder(spectrum))"
    plot_reconstruction(
        np.asarray(ds.energy_centres), ds.spectra[rows], recon, rd.path / RECONSTRUCTION, names=names, title=title
    )


# --------------------------------------------------------------------------------------------
# command line


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m fspnet.train`` / ``fspnet-train``.

    Exit status: 0 when training ended, 2 for a bad config, dataset, run directory or
    checkpoint, 1 when the loss became non-finite.
    """
    parser = argparse.ArgumentParser(prog="fspnet-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    parser.add_argument("--stage", choices=("decoder", "encoder"), help="network to train (overrides the config)")
    parser.add_argument("--run-dir", help="output folder (default: runs/<stage>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the results of an earlier run in the run directory (moved to <run-dir>/previous/ once the new run starts)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a dotted config key, e.g. training.learning_rate=1e-3 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--hyperparams",
        help="hpo's best_params.json: train its trial's whole config (a --config/--set that differs is refused); "
        "or a JSON of dotted config keys to values",
    )
    parser.add_argument(
        "--override", action="store_true",
        help="with --hyperparams: let --config/--set/--stage change the trial's config (each key overridden is logged)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        overrides = parse_overrides(args.overrides)
        if args.stage:
            overrides["stage"] = args.stage
        if args.run_dir:
            overrides["run_dir"] = args.run_dir
        if args.resume:
            overrides["resume"] = True
        if args.overwrite:
            overrides["overwrite"] = True
        if args.hyperparams:
            config = hyperparams_config(args.hyperparams, args.config, overrides, override=args.override)
        else:
            config = load_config(args.config, overrides)
        result = train(config)
    except (ConfigError, DataError) as e:
        parser.exit(2, f"fspnet-train: error: {e}\n")
    except TrainingError as e:
        parser.exit(1, f"fspnet-train: error: {e}\n")
    m = result["metrics"]
    print(
        f"{config['stage']}: {result['epochs']} epochs ({result['stopped']}); best val_loss "
        f"{m['best_val_loss']:.4g} at epoch {result['best_epoch']}; run dir {result['run_dir']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
