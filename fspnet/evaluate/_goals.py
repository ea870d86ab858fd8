"""FSP-Net's documented accuracy and speed goals, defined once.

The README's "Figures" table states them for the pre-trained encoder; the evaluation report
(:func:`fspnet.evaluate.evaluate`), ``python -m fspnet.compare`` and the tests all read them from
:data:`GOALS`, so a goal changes in one place.
"""

from __future__ import annotations

import dataclasses
import math
import typing as tp

from fspnet.evaluate._report import Report, mark

if tp.TYPE_CHECKING:
    from fspnet.evaluate._recovery import RecoverySection
    from fspnet.evaluate._spectral import PGStatSection
    from fspnet.evaluate._timing import TimingSection

__all__ = ["GOALS", "Goals", "GoalsSection"]


@dataclasses.dataclass(frozen=True)
class Goals:
    """The documented accuracy and speed goals.

    Args:
        recovery_pct: the encoder's median |Δ| of every parameter, as % of its (log-)range, at most this.
        pgstat_tolerance: the median reduced PGStat of (b) encoder + short fit within this fraction
            above that of (c) the traditional fit.
        speedup: the encoder at least this many times faster per spectrum than the traditional fit
            (one spectrum at a time).
    """

    recovery_pct: float = 5.0
    pgstat_tolerance: float = 0.10
    speedup: float = 1e4

    def recovery_met(self, pct: float) -> bool:
        """Whether a median |Δ| of ``pct`` % of the range meets the accuracy goal (NaN does not)."""
        return bool(pct <= self.recovery_pct)

    def pgstat_met(self, encoder_fit: float, fit: float) -> bool:
        """Whether (b) ``encoder_fit`` is within the tolerance of (c) ``fit`` (medians of reduced PGStat)."""
        return bool(encoder_fit <= (1.0 + self.pgstat_tolerance) * fit)

    def speedup_met(self, speedup: float) -> bool:
        """Whether the encoder's speed-up over the traditional fit meets the speed goal."""
        return bool(speedup >= self.speedup)

    @property
    def recovery_text(self) -> str:
        """The accuracy goal in words."""
        return f"median |Δ| ≤ {self.recovery_pct:g} % of each parameter's (log-)range"

    @property
    def pgstat_text(self) -> str:
        """The spectral-quality goal in words."""
        return f"encoder + short fit within {100 * self.pgstat_tolerance:g} % of the traditional fit's median reduced PGStat"

    @property
    def speedup_text(self) -> str:
        """The speed goal in words."""
        return f"encoder ≥ {self.speedup:,.0f}× faster than the traditional fit per spectrum"


#: the goals every report, comparison and test uses
GOALS = Goals()


@dataclasses.dataclass
class GoalsSection:
    """Which documented goals an evaluation meets (summary key ``goals``).

    Each entry is measured only when its inputs are: recovery against true parameters, the
    PGStat levels (b) and (c), and the fit's timing.

    Args:
        per_parameter_pct: the encoder's median |Δ| (% of range) per parameter, against true parameters.
        pgstat_medians: median reduced PGStat of (b) and (c) as ``(encoder_fit, fit)``.
        speedup: the encoder's speed-up over the traditional fit (one spectrum at a time).
        goals: the goals measured against.
    """

    key: tp.ClassVar[str | None] = "goals"

    per_parameter_pct: dict[str, float] | None = None
    pgstat_medians: tuple[float, float] | None = None
    speedup: float | None = None
    goals: Goals = GOALS

    @classmethod
    def compute(cls, recovery: RecoverySection, pgstat: PGStatSection, timing: TimingSection) -> GoalsSection:
        """Measure what the other sections allow: recovery against true parameters, (b) and (c), the fit's timing."""
        both = {"encoder_fit", "fit"} <= set(pgstat.levels)
        return cls(
            per_parameter_pct=recovery.encoder_pct() if recovery.reference == "true" else None,
            pgstat_medians=(pgstat.median("encoder_fit"), pgstat.median("fit")) if both else None,
            speedup=timing.speedup_encoder,
        )

    def to_dict(self) -> dict[str, dict[str, object]]:
        """``{recovery: {goal_pct, met, per_parameter_pct}, pgstat: {tolerance, ratio, met}, speedup: {goal, value, met}}``."""
        g = self.goals
        out: dict[str, dict[str, object]] = {}
        if self.per_parameter_pct:
            per = self.per_parameter_pct
            met = all(g.recovery_met(v) for v in per.values())
            out["recovery"] = {"goal_pct": g.recovery_pct, "met": met, "per_parameter_pct": dict(per)}
        if self.pgstat_medians is not None:
            b, c = self.pgstat_medians
            ratio = b / c if c else math.nan
            out["pgstat"] = {"tolerance": g.pgstat_tolerance, "ratio": ratio, "met": g.pgstat_met(b, c)}
        if self.speedup is not None:
            out["speedup"] = {"goal": g.speedup, "value": self.speedup, "met": g.speedup_met(self.speedup)}
        return out

    def render(self, report: Report) -> None:
        """The goals table (part of the overview)."""
        d = self.to_dict()
        rows: list[list[object]] = []
        if "recovery" in d:
            per = self.per_parameter_pct or {}
            worst = max(per.items(), key=lambda kv: kv[1])
            rows.append([self.goals.recovery_text, f"worst {worst[0]}: {worst[1]:.2f} %", mark(bool(d["recovery"]["met"]))])
        if "pgstat" in d:
            rows.append([self.goals.pgstat_text, f"ratio {d['pgstat']['ratio']:.3f}", mark(bool(d["pgstat"]["met"]))])
        if "speedup" in d:
            rows.append([self.goals.speedup_text, f"{d['speedup']['value']:.3g}×", mark(bool(d["speedup"]["met"]))])
        if rows:
            report.table(["documented accuracy and speed goals", "measured", ""], rows)
