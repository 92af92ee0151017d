"""Figures collected by the benchmark, the printed table and the JSON file."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SERVER_ORDER = ("pedipacs", "orthanc", "storescp")


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    unit: str  # inst/s and MB/s: higher is better; ms: lower is better
    orthanc_reference: float | None = None
    storescp_reference: float | None = None


@dataclass
class Observation:
    """What was seen of the machine while one figure was taken."""

    peak_rss_bytes: int = 0  # the server's, sampled
    background_cores: float = 0.0  # CPU used by other processes than the benchmark's


@dataclass
class Measurement:
    """One workload on one server: a figure per run, and the server's peak memory per run."""

    workload: str
    server: str
    values: list[float] = field(default_factory=list)
    peak_rss_bytes: list[int] = field(default_factory=list)
    background_cores: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def add(self, value: float, observed: Observation) -> None:
        self.values.append(value)
        self.peak_rss_bytes.append(observed.peak_rss_bytes)
        self.background_cores.append(observed.background_cores)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """Half the range of the runs, relative to the median: a plain noise indicator."""
        if len(self.values) < 2 or self.median == 0:
            return 0.0
        return (max(self.values) - min(self.values)) / 2 / self.median


@dataclass(frozen=True)
class GrowthStep:
    """One small-instance run: on the growing server, or on a fresh one (a control)."""

    instances_before: int
    instances_sent: int
    rate: float
    observed: Observation
    is_control: bool = False


@dataclass
class Results:
    workloads: list[Workload] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    growth: list[GrowthStep] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def find(self, workload: str, server: str) -> Measurement | None:
        for measurement in self.measurements:
            if measurement.workload == workload and measurement.server == server:
                return measurement
        return None

    def measurement(self, workload: str, server: str) -> Measurement:
        found = self.find(workload, server)
        if found is None:
            found = Measurement(workload, server)
            self.measurements.append(found)
        return found


def ratio(results: Results, workload: str, server: str) -> float | None:
    """pedipacs' figure divided by `server`'s."""
    ours, theirs = results.find(workload, "pedipacs"), results.find(workload, server)
    if not ours or not theirs or not ours.values or not theirs.values or theirs.median == 0:
        return None
    return ours.median / theirs.median


def figure(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _cell(results: Results, workload: Workload, server: str) -> str:
    found = results.find(workload.key, server)
    if not found or not found.values:
        return "-"
    return f"{figure(found.median)} ±{found.spread:.0%}"


def _ratio_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def figures_table(results: Results) -> str:
    header = (
        "workload",
        "unit",
        "pedipacs",
        "Orthanc",
        "storescp",
        "ped/Orth",
        "ped/scp",
        "Orth ref",
        "scp ref",
    )
    rows: list[tuple[str, ...]] = [header]
    for workload in results.workloads:
        rows.append(
            (
                workload.label,
                workload.unit,
                *(_cell(results, workload, server) for server in SERVER_ORDER),
                _ratio_cell(ratio(results, workload.key, "orthanc")),
                _ratio_cell(ratio(results, workload.key, "storescp")),
                figure(workload.orthanc_reference),
                figure(workload.storescp_reference),
            )
        )
    return format_table(rows)


def memory_table(results: Results, servers: Sequence[str] = SERVER_ORDER) -> str:
    rows: list[tuple[str, ...]] = [("workload", *(f"{server} peak RSS MB" for server in servers))]
    for workload in results.workloads:
        cells = []
        for server in servers:
            found = results.find(workload.key, server)
            peaks = found.peak_rss_bytes if found else []
            cells.append(f"{max(peaks) / 1e6:,.0f}" if peaks else "-")
        rows.append((workload.label, *cells))
    return format_table(rows)


def growth_table(results: Results) -> str:
    rows: list[tuple[str, ...]] = [
        ("server", "index before", "sent", "inst/s", "background cores", "peak RSS MB")
    ]
    for step in results.growth:
        rows.append(
            (
                "fresh (control)" if step.is_control else "growing",
                f"{step.instances_before:,}",
                f"{step.instances_sent:,}",
                figure(step.rate),
                f"{step.observed.background_cores:.2f}",
                f"{step.observed.peak_rss_bytes / 1e6:,.0f}",
            )
        )
    return format_table(rows)


def growth_summary(results: Results, tolerance: float = 0.2) -> str:
    steps = [step for step in results.growth if not step.is_control]
    controls = [step.rate for step in results.growth if step.is_control]
    last = steps[-1]
    at_zero = statistics.mean(controls) if controls else steps[0].rate
    change = last.rate / at_zero
    verdict = "within" if abs(change - 1) <= tolerance else "OUTSIDE"
    baseline = "fresh servers run just before and after it" if controls else "the first step"
    return (
        f"rate with {last.instances_before:,} stored / rate at 0 ({baseline}) = {change:.2f}: "
        f"{verdict} {tolerance:.0%}"
    )


def find_client_note(results: Results) -> str:
    """The C-FIND figures include the SCU's own decoding; say how much."""
    parts = []
    for measurement in results.measurements:
        cpu = measurement.detail.get("client_cpu_ms")
        if cpu:
            parts.append(
                f"{measurement.workload} {measurement.server} {statistics.median(cpu):.1f}"
            )
    if not parts:
        return ""
    return "C-FIND SCU (pynetdicom) CPU per query, ms, included above: " + ", ".join(parts)


def background_summary(results: Results) -> str:
    loads = [load for m in results.measurements for load in m.background_cores]
    loads += [step.observed.background_cores for step in results.growth]
    if not loads:
        return "background load: not measured"
    return (
        f"background load (CPU used by other processes during the timed runs): median "
        f"{statistics.median(loads):.2f} cores, max {max(loads):.2f} cores"
    )


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if number == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def write_json(results: Results, path: Path) -> None:
    document = {
        "context": results.context,
        "workloads": [asdict(workload) for workload in results.workloads],
        "measurements": [
            {
                **asdict(measurement),
                "median": measurement.median if measurement.values else None,
                "spread": measurement.spread if measurement.values else None,
            }
            for measurement in results.measurements
        ],
        "ratios": {
            workload.key: {
                "pedipacs/orthanc": ratio(results, workload.key, "orthanc"),
                "pedipacs/storescp": ratio(results, workload.key, "storescp"),
            }
            for workload in results.workloads
        },
        "growth": [asdict(step) for step in results.growth],
        "problems": results.problems,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
