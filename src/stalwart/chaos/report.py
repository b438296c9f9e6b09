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
from stalwart.chaos.schedule import FaultKind
from stalwart.errors import ConfigError

__all__ = ["Outcome", "write_report"]

_DETECTIONS: Final = frozenset({"exited", "late", "halted", "runaway", "slow"})
_RECOVERIES: Final = frozenset({"restarted", "started", "healthy"})
_SHOWN: Final = 20  # violations listed per invariant
_NAMED: Final = 60  # up to this many faults, the timeline names each on its bar


@dataclass
class Outcome:
    """Everything a report says about one campaign."""

    seed: int
    duration: float
    gap: float
    started: datetime
    wall: float
    journal: list[Entry]
    violations: list[Violation]
    events: list[dict[str, Any]]  # the watchdog's, see checker.watchdog_events
    cannot: dict[str, str]  # fault kind -> why it cannot be injected here
    sites_tag: str | None = None  # the simulated sites' prefix (namespaces, links)
    interval: float = 1.0  # seconds between demo units

    @property
    def replay(self) -> str:
        return replay_command(self.seed, self.duration, self.gap, self.interval)

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


def replay_command(seed: int, duration: float, gap: float, interval: float) -> str:
    """The command that runs the same schedule at the same demo rate."""
    return (
        f"stalwart chaos --seed {seed} --duration {duration:g}s --gap {gap:g} "
        f"--interval {interval:g}"
    )


def _markdown(o: Outcome) -> str:
    verdict = "PASS: no invariant broken" if o.ok else f"FAIL: {len(o.violations)} violation(s)"
    lines = [
        f"# Chaos campaign, seed {o.seed}",
        "",
        f"**{verdict}.** Schedule of {o.duration:.0f} s, {o.wall:.0f} s wall time, "
        f"started {o.started:%Y-%m-%d %H:%M:%S} UTC. Replay: `{o.replay}`.",
        "",
        "![timeline](timeline.png)",
        "",
        "## Faults by kind",
        "",
        "| kind | injected | skipped |",
        "|---|---|---|",
        *_by_kind(o.journal),
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


def _by_kind(journal: list[Entry]) -> list[str]:
    """One table row per fault kind: how many struck, how many found no target."""
    rows = []
    for kind in FaultKind:
        entries = [e for e in journal if e.planned.kind is kind]
        if entries:
            injected = sum(1 for e in entries if e.injected_at is not None)
            skipped = sum(1 for e in entries if e.skipped)
            rows.append(f"| {kind.value} | {injected} | {skipped} |")
    return rows


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
    struck = [e for e in o.journal if e.injected_at is not None]
    # A short campaign names each fault on its bar; a long one colours them by kind.
    named = len(struck) <= _NAMED
    palette = plt.get_cmap("tab20")
    colours = {kind: palette(i) for i, kind in enumerate(FaultKind)}
    for e in struck:
        assert e.injected_at is not None
        start = _seconds(o, e.injected_at)
        end = _seconds(o, e.healed_at) if e.healed_at else start
        colour = "tab:red" if named else colours[e.planned.kind]
        label = None if named else e.planned.kind.value
        ax.barh(
            y[e.planned.target],
            max(end - start, 0.5),
            left=start,
            height=0.6,
            color=colour,
            label=label,
        )
        if named:
            ax.annotate(e.planned.kind.value, (start, y[e.planned.target] + 0.35), fontsize=6)
    for marks, color, shape in ((_DETECTIONS, "tab:orange", "^"), (_RECOVERIES, "tab:green", "o")):
        xs = [_seconds(o, ev["at"]) for ev in o.events if ev["event"] in marks]
        ys = [y[str(ev["program"])] for ev in o.events if ev["event"] in marks]
        ax.scatter(xs, ys, c=color, marker=shape, s=18, zorder=3)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("seconds since the campaign started")
    faults = "faults (red)" if named else "faults (by kind)"
    ax.set_title(f"seed {o.seed}: {faults}, detections (orange), recoveries (green)")
    if not named:
        handles, labels = ax.get_legend_handles_labels()
        kinds = dict(zip(labels, handles, strict=False))
        fig.legend(kinds.values(), kinds.keys(), fontsize=7, loc="lower center", ncols=6)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout(rect=(0, 0 if named else 0.1, 1, 1))  # room for the legend below
    fig.savefig(path, dpi=110)
    plt.close(fig)
