"""Protocol v2's targets (issue 17), and the verdict on what a run measured.

Each target is a limit on one measured figure; :func:`verdicts` reads the figures from
the run's results (nothing here holds a measurement), and the report shows measured vs
target with "met" or the distance left. The registry's v1 figures are the baseline its
"halved" target is stated against (measured on v1, protocol version 1, by
:class:`benchmarks.air.RegistryMeter`; the only fixed figures here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

#: v1's hub registry work per zone enrolment (qr, MTU 247): SQL statements, transactions.
V1_REGISTRY_STATEMENTS: Final = 20
V1_REGISTRY_TRANSACTIONS: Final = 2


@dataclass(frozen=True)
class Target:
    what: str
    limit: float
    unit: str
    #: True: the measured figure must be at most the limit; False: at least.
    at_most: bool = True
    #: How a figure is written (e.g. "{:.2f}").
    fmt: str = "{:g}"


@dataclass(frozen=True)
class Verdict:
    target: Target
    measured: float | None
    how: str
    #: Why a target is not met, with this run's figures (shown only when it is not).
    why: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        if self.target.at_most:
            return self.measured <= self.target.limit
        return self.measured >= self.target.limit

    def cells(self) -> tuple[str, str, str]:
        t = self.target
        sign = "<=" if t.at_most else ">="
        goal = f"{sign} {t.fmt.format(t.limit)} {t.unit}".strip()
        if self.measured is None:
            return goal, "not measured", "-"
        measured = f"{t.fmt.format(self.measured)} {t.unit}".strip()
        if self.met:
            return goal, measured, "met"
        gap = abs(self.measured - t.limit)
        return goal, measured, f"**not met**: {t.fmt.format(gap)} {t.unit}".strip() + " to go"


QR_ZONE_FLIGHTS: Final = Target("qr + zone: protocol flights", 2, "")
CODE_ZONE_FLIGHTS: Final = Target("code + zone: protocol flights", 3, "")
KNOWN_SETUP: Final = Target("ATT round trips of set-up, known device (qr + zone)", 3, "")
QR_ZONE_BYTES: Final = Target("qr + zone: bytes on air, MTU 247", 2500, "B", fmt="{:,.0f}")
QR_ZONE_SECONDS: Final = Target(
    "qr + zone: connection -> committed, 30 ms, MTU 247, known device", 0.3, "s", fmt="{:.2f}"
)
DEVICE_CPU: Final = Target(
    "device CPU per handshake, SRP-6a 3072 device / bleprov device (worst mode)",
    5,
    "x",
    at_most=False,
    fmt="{:.1f}",
)
REGISTRY: Final = Target(
    f"hub registry SQL statements per zone enrolment (v1: {V1_REGISTRY_STATEMENTS})",
    V1_REGISTRY_STATEMENTS / 2,
    "",
)
REGISTRY_TRANSACTIONS: Final = Target(
    f"hub registry transactions per zone enrolment (v1: {V1_REGISTRY_TRANSACTIONS})",
    V1_REGISTRY_TRANSACTIONS / 2,
    "",
)
TARGETS: Final = (
    QR_ZONE_FLIGHTS,
    CODE_ZONE_FLIGHTS,
    KNOWN_SETUP,
    QR_ZONE_BYTES,
    QR_ZONE_SECONDS,
    DEVICE_CPU,
    REGISTRY,
    REGISTRY_TRANSACTIONS,
)


def render(verdicts: Sequence[Verdict]) -> str:
    """The table, then why each target not met is not (the issue asks for the distance
    and the reason)."""
    lines = ["| target | limit | measured | verdict | measured on |", "|---|---|---|---|---|"]
    for v in verdicts:
        goal, measured, verdict = v.cells()
        lines.append(f"| {v.target.what} | {goal} | {measured} | {verdict} | {v.how} |")
    unmet = [v for v in verdicts if v.met is False and v.why]
    if unmet:
        lines += ["", "Why the targets not met are not met (figures from this run):", ""]
        lines += [f"- **{v.target.what}**: {v.why}" for v in unmet]
    return "\n".join(lines)


def verdict(
    target: Target,
    measure: Callable[[], float | None],
    how: str,
    why: Callable[[], str] = lambda: "",
) -> Verdict:
    """``measure`` and ``why`` read the run's results; a figure the run lacks (a quick
    run, a section skipped) is "not measured", never an error."""
    try:
        value = measure()
    except (KeyError, StopIteration, ZeroDivisionError):
        value = None
    try:
        reason = why()
    except (KeyError, StopIteration, ZeroDivisionError, TypeError):
        reason = ""
    return Verdict(target, value, how, reason)
