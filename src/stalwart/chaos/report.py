"""The campaign's report: ``report.md`` and ``timeline.png`` in the report directory.

The timeline has one row per target: a red bar from each fault's injection to
its heal, an orange triangle for each detection by the watchdog (exited,
late, halted, runaway, slow) and a green dot for each recovery (restarted,
started, healthy) of that program.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from stalwart.chaos.checker import Violation, count_by
from stalwart.chaos.journal import Entry
from stalwart.errors import ConfigError

__all__ = ["Outcome", "write_report"]

_DETECTIONS: Final = frozenset({"exited", "late", "halted", "runaway", "slow"})
_RECOVERIES: Final = frozenset({"restarted", "started", "healthy"})
_SHOWN: Final = 20  # violations listed per invariant


@dataclass
class Outcome:
    """Everything a report says about one campaign."""

    seed: int
    duration: float
    started: datetime
    wall: float
    journal: list[Entry]
    violations: list[Violation]
    events: list[dict[str, Any]]  # the watchdog's, see checker.watchdog_events
    cannot: dict[str, str]  # fault kind -> why it cannot be injected here
    sites_tag: str | None = None  # the simulated sites' prefix (namespaces, links)

    @property
    def ok(self) -> bool:
        return not self.violations


def write_report(outcome: Outcome, directory: Path) -> Path:
    """Write ``report.md`` and ``timeline.png`` into ``directory``; return the Markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    _timeline(outcome, directory / "timeline.png")
    path = directory / "report.md"
    path.write_text(_markdown(outcome))
    return path


def _seconds(outcome: Outcome, at: datetime) -> float:
    return (at - outcome.started).total_seconds()


def _markdown(o: Outcome) -> str:
    verdict = "PASS: no invariant broken" if o.ok else f"FAIL: {len(o.violations)} violation(s)"
    lines = [
        f"# Chaos campaign, seed {o.seed}",
        "",
        f"**{verdict}.** Schedule of {o.duration:.0f} s, {o.wall:.0f} s wall time, "
        f"started {o.started:%Y-%m-%d %H:%M:%S} UTC. Replay: `stalwart chaos --seed {o.seed} "
        f"--duration {o.duration:.0f}s`.",
        "",
        "![timeline](timeline.png)",
        "",
        "## Faults",
        "",
        "| # | at (s) | fault | target | injected (s) | healed (s) | what happened |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in o.journal:
        inj = f"{_seconds(o, e.injected_at):.1f}" if e.injected_at else "-"
        heal = f"{_seconds(o, e.healed_at):.1f}" if e.healed_at else "-"
        what = f"skipped: {e.skipped}" if e.skipped else f"{e.detail}; heal: {e.heal_detail}"
        lines.append(
            f"| {e.index} | {e.planned.at:.1f} | {e.planned.kind.value} | {e.planned.target} "
            f"| {inj} | {heal} | {what.replace('|', '/')} |"
        )
    lines += ["", "## Invariants", "", "| invariant | violations |", "|---|---|"]
    counts = count_by(o.violations)
    lines += [f"| {name} | {n} |" for name, n in counts.items()]
    for name, n in counts.items():
        if n:
            lines += ["", f"### {name}", ""]
            shown = [v.detail for v in o.violations if v.invariant == name][:_SHOWN]
            lines += [f"- {detail}" for detail in shown]
            if n > len(shown):
                lines.append(f"- … and {n - len(shown)} more")
    if o.cannot:
        lines += ["", "## Not injected here", ""]
        lines += [f"- {kind}: {why}" for kind, why in sorted(o.cannot.items())]
    detections = sum(1 for e in o.events if e["event"] in _DETECTIONS)
    recoveries = sum(1 for e in o.events if e["event"] in _RECOVERIES)
    lines += [
        "",
        "## Watchdog",
        "",
        f"{detections} detections and {recoveries} recoveries by the watchdog "
        '(see docs/chaos.md, "Reading the report").',
        "",
    ]
    return "\n".join(lines)


def _timeline(o: Outcome, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "the chaos report draws its timeline with matplotlib: "
            "pip install 'stalwart[chaos]' (or scripts/setup.sh test)"
        ) from None
    rows = sorted({e.planned.target for e in o.journal} | {"watchdog"})
    rows += sorted({str(ev["program"]) for ev in o.events} - set(rows))
    y = {name: i for i, name in enumerate(rows)}
    fig, ax = plt.subplots(figsize=(12, max(3.0, 0.35 * len(rows) + 1.5)))
    for e in o.journal:
        if e.injected_at is None:
            continue
        start = _seconds(o, e.injected_at)
        end = _seconds(o, e.healed_at) if e.healed_at else start
        ax.barh(y[e.planned.target], max(end - start, 0.5), left=start, height=0.6, color="tab:red")
        ax.annotate(e.planned.kind.value, (start, y[e.planned.target] + 0.35), fontsize=6)
    for marks, color, shape in ((_DETECTIONS, "tab:orange", "^"), (_RECOVERIES, "tab:green", "o")):
        xs = [_seconds(o, ev["at"]) for ev in o.events if ev["event"] in marks]
        ys = [y[str(ev["program"])] for ev in o.events if ev["event"] in marks]
        ax.scatter(xs, ys, c=color, marker=shape, s=18, zorder=3)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("seconds since the campaign started")
    ax.set_title(f"seed {o.seed}: faults (red), detections (orange), recoveries (green)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
