"""Contract suites that every trainable and every storage must pass."""

from __future__ import annotations

import math
import threading
import typing as tp
from pathlib import Path

import optuna

from hpo.trainables import Trainable, get_trainable

__all__ = ["check_storage", "check_trainable"]


def check_trainable(
    trainable: Trainable | str | tp.Callable[..., dict[str, tp.Any]],
    config: dict[str, tp.Any],
    tmp_path: str | Path,
    *,
    metric: str = "val_loss",
    stop_after: int = 2,
    rel_tol: float = 1e-6,
) -> None:
    """Assert that ``trainable`` honours the trainable contract.

    1. ``train`` calls the callback once per epoch with ``metric`` among the metrics, writes
       into ``run_dir`` and returns ``{"metrics": {metric: ...}, "epochs": n, ...}``.
    2. Returning ``{"stop"}`` ends training after that epoch (``stopped == "callback"``).
    3. Stopping with ``{"checkpoint", "stop"}`` and training again with ``resume: true``
       finishes with the same ``metric`` as an uninterrupted run (within ``rel_tol``).
    4. An ``interrupt`` event that becomes set while epoch ``stop_after + 1`` runs (after its
       first batch, for trainables that run batches) ends training with ``stopped ==
       "interrupted"`` before another epoch completes; ``resume: true`` then continues with
       the next epoch, and the per-epoch ``metric`` of both parts equals the uninterrupted
       run's epoch by epoch (within ``rel_tol``).

    Args:
        trainable: the trainable (instance, registered name, ``module:function`` or function).
        config: a resolved base config for it, small enough to train in seconds.
        tmp_path: an empty folder for the run directories.
        metric: the validation metric reported every epoch.
        stop_after: epochs run before the stop in checks 2 and 3 (the run must be longer).
        rel_tol: relative tolerance of check 3.

    Raises:
        AssertionError: naming the broken clause.
    """
    t = get_trainable(trainable)
    tmp_path = Path(tmp_path)

    values: dict[str, list[float]] = {}

    def run(
        name: str, stop_at: int | None, resume: bool = False, interrupt: _SetAfterPolls | None = None
    ) -> tuple[dict[str, tp.Any], list[int]]:
        epochs: list[int] = []
        seen = values.setdefault(name, [])

        def callback(epoch: int, metrics: dict[str, float]) -> set[str]:
            assert metric in metrics, f"callback metrics {sorted(metrics)} lack {metric!r}"
            assert math.isfinite(float(metrics[metric])), f"{metric} is {metrics[metric]} at epoch {epoch}"
            epochs.append(int(epoch))
            seen.append(float(metrics[metric]))
            if stop_at is not None and len(epochs) >= stop_at:
                if interrupt is not None:
                    interrupt.arm()
                    return set()
                return {"checkpoint", "stop"}
            return set()

        cfg = t.prepare(config, run_dir=tmp_path / name, seed=0, resume=resume)
        result = t.train(cfg, callback, interrupt) if interrupt is not None else t.train(cfg, callback)
        assert isinstance(result, dict) and metric in result.get("metrics", {}), f"result lacks metrics.{metric}: {result!r}"
        return result, epochs

    full, full_epochs = run("full", None)
    assert full_epochs, "the callback was never called"
    assert full_epochs == sorted(set(full_epochs)), f"epochs must increase, got {full_epochs}"
    assert any((tmp_path / "full").iterdir()), "nothing was written into run_dir"
    assert len(full_epochs) > stop_after, f"the config must train more than {stop_after} epochs"

    stopped, stopped_epochs = run("stopped", stop_after)
    assert len(stopped_epochs) == stop_after, f"'stop' was ignored: ran epochs {stopped_epochs}"
    assert stopped.get("stopped", "callback") == "callback", f"stopped is {stopped.get('stopped')!r}, expected 'callback'"

    resumed, resumed_epochs = run("stopped", None, resume=True)
    assert resumed_epochs and resumed_epochs[0] == stopped_epochs[-1] + 1, (
        f"resume must continue after epoch {stopped_epochs[-1]}, but started at {resumed_epochs[:1]}"
    )
    a, b = float(full["metrics"][metric]), float(resumed["metrics"][metric])
    assert math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12), f"resumed {metric} {b} != uninterrupted {a}"

    event = _SetAfterPolls(polls=2)
    interrupted, interrupted_epochs = run("interrupted", stop_after, interrupt=event)
    assert event.is_set(), "the interrupt was never polled: train must check it between batches"
    assert interrupted.get("stopped") == "interrupted", f"stopped is {interrupted.get('stopped')!r}, expected 'interrupted'"
    assert len(interrupted_epochs) <= stop_after + 1, f"the interrupt was honoured only after epochs {interrupted_epochs}"
    resumed, resumed_epochs = run("interrupted", None, resume=True)
    assert resumed_epochs and resumed_epochs[0] == interrupted_epochs[-1] + 1, (
        f"resume after an interrupt must continue after epoch {interrupted_epochs[-1]}, but started at {resumed_epochs[:1]}"
    )
    assert interrupted_epochs + resumed_epochs == full_epochs, f"epochs {interrupted_epochs} + {resumed_epochs} != {full_epochs}"
    for epoch, x, y in zip(full_epochs, values["full"], values["interrupted"]):
        assert math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12), (
            f"epoch {epoch}: {metric} {y} after an interrupt and resume != uninterrupted {x}"
        )


class _SetAfterPolls(threading.Event):
    """An event that sets itself at the ``polls``-th :meth:`is_set` after :meth:`arm`.

    A deterministic stand-in for a signal that arrives while a batch runs: armed from the
    callback of epoch k, it is seen as set by the trainable's second check, i.e. after the
    first batch of epoch k + 1 for a trainable that checks before each epoch and after each
    batch.
    """

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.polls, self.count, self.armed = polls, 0, False

    def arm(self) -> None:
        self.armed = True

    def is_set(self) -> bool:
        if self.armed and not super().is_set():
            self.count += 1
            if self.count >= self.polls:
                self.set()
        return super().is_set()


def check_storage(url: str, *, n_threads: int = 4, trials_per_thread: int = 3) -> None:
    """Assert that the storage at ``url`` supports what :mod:`hpo` needs.

    Create-or-load is idempotent; workers with their own storage objects ask concurrently
    without duplicate trial numbers; params, user attrs and intermediate values round-trip;
    the study can be loaded by name afterwards.

    Raises:
        AssertionError: naming the broken clause.
    """
    from hpo.study import make_storage

    name = "contract"
    optuna.create_study(storage=make_storage(url), study_name=name, load_if_exists=True)
    numbers: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            study = optuna.create_study(storage=make_storage(url), study_name=name, load_if_exists=True)
            for _ in range(trials_per_thread):
                trial = study.ask()
                x = trial.suggest_float("x", -1.0, 1.0)
                trial.report(x * x + 1.0, 0)
                trial.set_user_attr("metrics", {"val_loss": x * x})
                study.tell(trial, x * x)
                with lock:
                    numbers.append(trial.number)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, f"workers failed: {errors[0]!r}"
    assert len(numbers) == len(set(numbers)) == n_threads * trials_per_thread, f"duplicate trial numbers: {sorted(numbers)}"
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(len(trials))), "trial numbers must be 0..n-1"
    for t in trials:
        assert "x" in t.params and t.user_attrs["metrics"]["val_loss"] == t.value, f"trial {t.number} lost its attrs"
        assert t.intermediate_values == {0: t.params["x"] ** 2 + 1.0}, f"trial {t.number} lost intermediate values"
