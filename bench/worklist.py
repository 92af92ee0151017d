"""Modality Worklist C-FIND with 10,000 scheduled items, against the issue's target: p95 under
50 ms.

The items are placed through the RIS services (PatientService.register, OrderService.place) in a
fresh SQLite database, with a few cancelled orders among them. Then `pedipacs serve` answers
queries as modalities ask them, each time for another station and day:

- `station, day`: one station's items of one day (what a modality asks every few minutes);
- `station, week`: one station's items of seven days;
- `day, every station`: one day's items of every station.

Each kind is timed twice: `findscu -W` as a whole (process start, association, query, release:
what a modality's user waits for), and the C-FIND alone on one open association (pynetdicom as
the SCU: the server's answer). Prints p50/p95 of each, the match counts and the machine's
background load during the timed runs.

    .venv/bin/python bench/worklist.py                          # 10,000 items, 200 queries each
    .venv/bin/python bench/worklist.py --items 1000 --queries 30   # smoke run

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from noise import BackgroundLoad
from pedipacs.config import Settings
from pedipacs.model.origin import Origin
from pedipacs.model.ris import (
    OrderRequest,
    PatientIdentity,
    PatientRegistration,
    Priority,
    ProcedureRequest,
    ScheduledStepRequest,
)
from pedipacs.node import Node
from peers import LOOPBACK, SCU_AE_TITLE, Pedipacs, tool_environment
from runner import say

TARGET_P95_MS = 50.0
STATIONS = tuple(f"MOD{n:02d}" for n in range(1, 21))
MODALITIES = ("US", "DX", "CT", "MR", "CR")
DAYS = 43  # the items are spread over this many days
FIRST_DAY = date(2026, 11, 23)
ITEMS_PER_PATIENT = 4
CANCELLED_EVERY = 20  # one order in 20 is cancelled on top of the scheduled items
WARMUP = 5
PENDING = (0xFF00, 0xFF01)
SPS = "ScheduledProcedureStepSequence"
# What a modality asks for (PS3.4 K.6), empty: returned for every item.
RETURN_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "AccessionNumber", "ReferringPhysicianName", "RequestedProcedureID",
    "RequestedProcedureDescription", "RequestedProcedurePriority", "StudyInstanceUID",
)  # fmt: skip
SPS_RETURN_KEYS = (
    "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime", "Modality", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
)  # fmt: skip


@dataclass(frozen=True)
class Ask:
    """One worklist query: a station (None: every station) and a range of days."""

    station: str | None
    first: date
    last: date

    def date_range(self) -> str:
        first, last = self.first.strftime("%Y%m%d"), self.last.strftime("%Y%m%d")
        return first if first == last else f"{first}-{last}"

    def findscu_keys(self) -> list[str]:
        keys = [f"{k}=" for k in RETURN_KEYS]
        keys += [f"{SPS}[0].{k}=" for k in SPS_RETURN_KEYS if k != "ScheduledStationAETitle"]
        keys.append(f"{SPS}[0].ScheduledStationAETitle={self.station or ''}")
        keys.append(f"{SPS}[0].ScheduledProcedureStepStartDate={self.date_range()}")
        return keys

    def identifier(self) -> Dataset:
        identifier = Dataset()
        for keyword in RETURN_KEYS:
            setattr(identifier, keyword, "")
        item = Dataset()
        for keyword in SPS_RETURN_KEYS:
            setattr(item, keyword, "")
        item.ScheduledStationAETitle = self.station or ""
        item.ScheduledProcedureStepStartDate = self.date_range()
        identifier.ScheduledProcedureStepSequence = [item]
        return identifier


KINDS: dict[str, Callable[[int], Ask]] = {
    "station, day": lambda i: Ask(
        STATIONS[i % len(STATIONS)], _day(i * 7), _day(i * 7)
    ),
    "station, week": lambda i: Ask(
        STATIONS[i % len(STATIONS)], _day(i * 3), _day(i * 3) + timedelta(days=6)
    ),
    "day, every station": lambda i: Ask(None, _day(i * 11), _day(i * 11)),
}  # fmt: skip


def _day(n: int) -> date:
    return FIRST_DAY + timedelta(days=n % DAYS)


@dataclass
class Figures:
    kind: str
    tool_ms: list[float]
    round_trip_ms: list[float]
    matches: list[int]
    background_cores: float

    @staticmethod
    def p(values: list[float], percent: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def schedule(data_dir: Path, items: int) -> float:
    """Place `items` scheduled steps (and the cancelled orders) through the services in a fresh
    SQLite database under `data_dir`; returns the seconds it took."""
    node = Node.from_settings(Settings(data_dir=data_dir, dicom_workers=1))
    origin = Origin.cli("bench")
    started = time.perf_counter()
    try:
        node.migrate()
        orders = items + items // CANCELLED_EVERY
        for n in range(orders):
            identity = PatientIdentity(f"MRN{n // ITEMS_PER_PATIENT:06d}", "BENCH")
            if n % ITEMS_PER_PATIENT == 0:
                birth = date(2010, 1, 1) + timedelta(days=(n * 37) % 6000)
                registration = PatientRegistration(
                    (identity,),
                    f"CHILD{n:06d}^BENCH",
                    birth,
                    sex="FM"[(n // ITEMS_PER_PATIENT) % 2],
                )
                node.patients.register(registration, origin)
            node.orders.place(_order(n, identity), origin)
            if n % (CANCELLED_EVERY + 1) == CANCELLED_EVERY:
                node.orders.cancel(f"B{n:07d}", origin)
            if n and n % 1000 == 0:
                say(f"  {n} orders placed")
    finally:
        node.stop()
    return time.perf_counter() - started


def _order(n: int, patient: PatientIdentity) -> OrderRequest:
    station = STATIONS[n % len(STATIONS)]
    start = datetime.combine(_day(n // len(STATIONS)), datetime.min.time()) + timedelta(
        hours=7 + n % 12, minutes=(n * 5) % 60
    )
    step = ScheduledStepRequest(
        step_id=f"S{n:07d}",
        modality=MODALITIES[n % len(MODALITIES)],
        station_ae_title=station,
        station_name=station,
        start=start,
        description="Scheduled exam",
        performing_physician="TECH^ONE",
    )
    return OrderRequest(
        patient=patient,
        accession_number=f"B{n:07d}",
        priority=Priority.STAT if n % 50 == 0 else Priority.ROUTINE,
        referring_physician="OKAFOR^ADA",
        patient_weight=f"{10 + n % 50}",
        procedures=(ProcedureRequest(f"RP{n:07d}", "Scheduled procedure", steps=(step,)),),
    )


def time_findscu(server: Pedipacs, ask: Ask) -> float:
    command = ["findscu", "-W", "-aet", SCU_AE_TITLE, "-aec", server.ae_title]
    for key in ask.findscu_keys():
        command += ["-k", key]
    command += [LOOPBACK, str(server.dicom_port)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, env=tool_environment(), check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"findscu failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return elapsed * 1000


class WorklistClient:
    """One association kept open for timing worklist C-FINDs."""

    def __init__(self, server: Pedipacs) -> None:
        ae = AE(ae_title=SCU_AE_TITLE)
        ae.add_requested_context(ModalityWorklistInformationFind)
        self._assoc: Any = ae.associate(
            LOOPBACK, server.dicom_port, ae_title=server.ae_title, max_pdu=0
        )
        if not self._assoc.is_established:
            raise RuntimeError("pedipacs refused the worklist association")
        # pynetdicom leaves Nagle's algorithm on: each round trip would wait ~40 ms.
        self._assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def find(self, ask: Ask) -> tuple[float, int]:
        """One C-FIND to its final response: milliseconds and the number of matches."""
        started = time.perf_counter()
        matches = 0
        for status, _identifier in self._assoc.send_c_find(
            ask.identifier(), ModalityWorklistInformationFind
        ):
            code = int(status.Status) if status else -1
            if code in PENDING:
                matches += 1
            elif code != 0:
                raise RuntimeError(f"worklist C-FIND answered 0x{code:04X}")
        return (time.perf_counter() - started) * 1000, matches

    def release(self) -> None:
        self._assoc.release()


def measure(server: Pedipacs, kind: str, queries: int) -> Figures:
    ask_for = KINDS[kind]
    client = WorklistClient(server)
    try:
        for i in range(WARMUP):
            client.find(ask_for(i))
            time_findscu(server, ask_for(i))
        tool, round_trip, matches = [], [], []
        with BackgroundLoad(server) as background:
            for i in range(queries):
                ask = ask_for(WARMUP + i)
                elapsed, count = client.find(ask)
                round_trip.append(elapsed)
                matches.append(count)
                tool.append(time_findscu(server, ask))
    finally:
        client.release()
    return Figures(kind, tool, round_trip, matches, background.cores)


def report(figures: list[Figures], items: int, seconds: float) -> None:
    cores = os.cpu_count() or 1
    print(f"\nModality Worklist C-FIND, {items:,} scheduled items (SQLite), {cores} cores")
    print(f"placed through the services in {seconds:.0f} s ({items / seconds:.0f} orders/s)")
    print(f"target: p95 < {TARGET_P95_MS:.0f} ms\n")
    header = (
        f"{'query':<20} {'matches':>9} {'C-FIND p50':>11} {'p95':>7} "
        f"{'findscu p50':>12} {'p95':>7} {'background':>11}"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        matches = f"{min(f.matches)}-{max(f.matches)}"
        print(
            f"{f.kind:<20} {matches:>9} {Figures.p(f.round_trip_ms, 50):>9.1f}ms "
            f"{Figures.p(f.round_trip_ms, 95):>5.1f}ms {Figures.p(f.tool_ms, 50):>10.1f}ms "
            f"{Figures.p(f.tool_ms, 95):>5.1f}ms {f.background_cores:>6.2f} cores"
        )
    worst = max(Figures.p(f.round_trip_ms, 95) for f in figures)
    verdict = "met" if worst < TARGET_P95_MS else "NOT met"
    print(f"\nC-FIND p95, worst kind: {worst:.1f} ms: target {verdict}")
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--items", type=int, default=10_000, help="scheduled items")
    parser.add_argument("--queries", type=int, default=200, help="timed queries of each kind")
    parser.add_argument("--work-dir", type=Path, help="where the server stores (default: temp)")
    args = parser.parse_args()
    if shutil.which("findscu") is None:
        raise SystemExit("findscu is missing (make system-deps installs DCMTK)")
    workdir = Path(tempfile.mkdtemp(prefix="pedipacs-worklist-", dir=args.work_dir))
    say(f"placing {args.items:,} scheduled items in {workdir}")
    seconds = schedule(workdir / "server" / "data", args.items)
    say(f"load average before the queries: {os.getloadavg()}")
    figures = []
    with Pedipacs(workdir / "server") as server:
        for kind in KINDS:
            say(f"timing {args.queries} queries: {kind}")
            figures.append(measure(server, kind, args.queries))
    report(figures, args.items, seconds)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
