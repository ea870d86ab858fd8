"""The report's trials section: the plots of the best and of a few pruned trials.

:class:`TrialsSection` picks the top-k COMPLETE trials (best first) and the pruned trials that ran
longest, and shows each with its value, parameters and the PNG plots of its run folder (loss
curve, reconstructions) as thumbnails linked to the folder. ``report.html`` stays one
self-contained offline file of bounded size: thumbnails are at most ``max_px`` wide and the
section stops adding images past ``max_bytes``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

if tp.TYPE_CHECKING:
    from hpo.study import StudyConfig

__all__ = ["TrialEntry", "TrialsSection"]

#: Plots shown first when a run folder has them (fspnet.rundir's names).
_PREFERRED = ("loss_curve.png", "reconstruction.png")


@dataclasses.dataclass
class TrialEntry:
    """One trial of the section: what it is, where it is, and its thumbnails (name, data URI)."""

    number: int
    state: str
    value: str
    params: dict[str, tp.Any]
    link: str
    thumbnails: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrialsSection:
    """Top-k and pruned trials with their plots; build with :meth:`compute`, render with :meth:`to_html`."""

    entries: list[TrialEntry]
    truncated: bool = False

    @classmethod
    def compute(
        cls,
        cfg: StudyConfig,
        study: optuna.Study,
        out_dir: Path,
        *,
        top_k: int | None = None,
        n_pruned: int = 3,
        max_px: int = 320,
        max_images: int = 3,
        max_bytes: int = 2_000_000,
    ) -> TrialsSection:
        """Choose the trials and make their thumbnails.

        Args:
            cfg, study: the study.
            out_dir: the folder of ``report.html`` (links are relative to it).
            top_k: COMPLETE trials shown, best first (default ``cfg.keep_top_k``, at least 1, at most 10).
            n_pruned: pruned trials shown, those that ran the most epochs first.
            max_px: largest side of a thumbnail in pixels.
            max_images: plots per trial.
            max_bytes: total size of the thumbnails (base64) after which no more are added.
        """
        from hpo.collate import ranked_trials

        k = top_k if top_k is not None else min(max(cfg.keep_top_k, 1), 10)
        chosen: list[FrozenTrial] = ranked_trials(study)[:k]
        pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        chosen += sorted(pruned, key=lambda t: (-len(t.intermediate_values), t.number))[:n_pruned]
        entries, used, truncated = [], 0, False
        for t in chosen:
            run_dir = cfg.trial_dir(t.number)
            value = (
                ", ".join(f"{m} = {v:.6g}" for m, v in zip(cfg.metrics, t.values))
                if t.values
                else f"{len(t.intermediate_values)} epoch(s)"
            )
            e = TrialEntry(t.number, t.state.name, value, dict(t.params), _link(run_dir, out_dir))
            pngs = sorted(
                run_dir.glob("*.png"),
                key=lambda p: (p.name not in _PREFERRED, _PREFERRED.index(p.name) if p.name in _PREFERRED else 0, p.name),
            )
            for png in pngs[:max_images]:
                uri = _thumbnail(png, max_px)
                if uri is None:
                    continue
                if used + len(uri) > max_bytes:
                    truncated = True
                    break
                used += len(uri)
                e.thumbnails.append((png.name, uri))
            entries.append(e)
        return cls(entries, truncated)

    def to_html(self) -> str:
        """The ``<section id="trials">`` of the report."""
        if not self.entries:
            return '<section id="trials"><h2>Best and pruned trials</h2><p class="meta">No finished trial yet.</p></section>'
        cards = []
        for e in self.entries:
            params = ", ".join(
                f"{html.escape(str(k))} = {html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}"
                for k, v in e.params.items()
            )
            imgs = (
                "".join(
                    f'<a href="{html.escape(e.link)}"><img src="{uri}" alt="{html.escape(name)}" title="{html.escape(name)}" '
                    f'style="max-width:100%"></a>'
                    for name, uri in e.thumbnails
                )
                or '<p class="meta">no plots</p>'
            )
            cards.append(
                f'<div class="trial-card" data-state="{e.state}"><h3><a href="{html.escape(e.link)}">trial {e.number}</a> '
                f'· {e.state} · {html.escape(e.value)}</h3><p class="meta">{params}</p>{imgs}</div>'
            )
        note = (
            '<p class="meta">More plots are in the trial folders (the report keeps its size bounded).</p>'
            if self.truncated
            else ""
        )
        return f'<section id="trials"><h2>Best and pruned trials</h2>{note}{"".join(cards)}</section>'


def _link(run_dir: Path, out_dir: Path) -> str:
    try:
        return Path(os.path.relpath(run_dir.resolve(), out_dir.resolve())).as_posix() + "/"
    except ValueError:  # another drive
        return run_dir.resolve().as_uri()


def _thumbnail(path: Path, max_px: int) -> str | None:
    """A PNG data URI of ``path`` scaled to at most ``max_px`` (``None`` if it is not readable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.thumbnail((max_px, max_px))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
