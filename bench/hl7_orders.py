"""HL7 v2 orders against the issue's targets: ORM^O01 to a visible worklist item with a p95
under 200 ms, and at least 100 messages a second on one connection.

`pedipacs serve` runs on a fresh SQLite database with its HL7 listener. The benchmark registers
patients (ADT^A04), then:

- latency: one ORM^O01 (NW) at a time; the clock runs from the first byte sent until a
  Modality Worklist C-FIND (pynetdicom, on an association kept open) finds the new accession
  number: the order travelled MLLP, was parsed, applied, acknowledged and is on the worklist;
- throughput: ORM^O01 messages back to back on one MLLP connection, each waiting for its ACK
  (original mode, as interface engines send), new orders every time: messages per second.

    .venv/bin/python bench/hl7_orders.py          # 300 timed orders, 2,000 back to back
    .venv/bin/python bench/hl7_orders.py --orders 50 --burst 200  # smoke run

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from noise import BackgroundLoad
from peers import LOOPBACK, SCU_AE_TITLE, Pedipacs, free_port
from runner import say

LATENCY_TARGET_P95_MS = 200.0
THROUGHPUT_TARGET = 100.0
SENDER = "BENCH"
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
PATIENTS = 50
STATION = "US_ED_1"
PENDING = (0xFF00, 0xFF01)


class Hl7Pedipacs(Pedipacs):
    """pedipacs with its HL7 listener on, accepting the benchmark as a sender."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.hl7_port = free_port()

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "PEDIPACS_HL7_PORT": str(self.hl7_port),
            "PEDIPACS_HL7_SENDERS": json.dumps([SENDER]),
        }


def _segment(name: str, fields: dict[int, str]) -> str:
    last = max(fields)
    return name + "|" + "|".join(fields.get(n, "") for n in range(1, last + 1))


def _msh(control_id: str, message_type: str) -> str:
    return (
        f"MSH|^~\\&|{SENDER}|CHILDRENS|PEDIPACS|RADIOLOGY|{time.strftime('%Y%m%d%H%M%S')}||"
        f"{message_type}|{control_id}|P|2.5.1"
    )


def _pid(n: int) -> str:
    return _segment(
        "PID",
        {1: "1", 3: f"MRN{n:06d}^^^CHILDRENS^MR", 5: f"PATIENT{n:06d}^CHILD", 7: "20190301",
         8: "F" if n % 2 else "M"},
    )  # fmt: skip


def adt(n: int) -> bytes:
    return "\r".join(
        (_msh(f"ADT{n:06d}", "ADT^A04^ADT_A01"), _segment("EVN", {1: "A04"}), _pid(n),
         _segment("PV1", {1: "1", 2: "E"}))
    ).encode() + CR  # fmt: skip


def orm(n: int, today: date) -> tuple[bytes, str]:
    """A STAT ultrasound for patient n % PATIENTS; its accession number."""
    accession = f"B{n:07d}"
    start = f"{today:%Y%m%d}1030"
    text = "\r".join(
        (
            _msh(f"ORM{n:07d}", "ORM^O01^ORM_O01"),
            _pid(n % PATIENTS),
            _segment("PV1", {1: "1", 2: "E"}),
            _segment("ORC", {1: "NW", 2: f"PL{n}^HIS", 3: f"FL{n}^RIS", 7: f"^^^{start}^^S"}),
            _segment(
                "OBR",
                {
                    1: "1",
                    2: f"PL{n}^HIS",
                    3: f"FL{n}^RIS",
                    4: "76705^US ABDOMEN^C4",
                    13: "Right iliac fossa pain",
                    18: accession,
                    19: f"RP{n}",
                    20: f"SPS{n}",
                    21: STATION,
                    24: "US",
                    27: f"^^^{start}^^S",
                },
            ),
        )
    )
    return text.encode() + CR, accession


class MllpConnection:
    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection((LOOPBACK, port), timeout=30)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def exchange(self, message: bytes) -> str:
        """Send one framed message and return the acknowledgement code (MSA-1)."""
        self._socket.sendall(VT + message + FS + CR)
        while FS + CR not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise RuntimeError("pedipacs closed the MLLP connection")
            self._buffer += chunk
        frame, _, self._buffer = self._buffer.partition(FS + CR)
        ack = frame.lstrip(VT).decode(errors="replace")
        msa = next((s for s in ack.split("\r") if s.startswith("MSA|")), "MSA|??")
        return msa.split("|")[1]

    def close(self) -> None:
        self._socket.close()


class Worklist:
    """One worklist association kept open: does an accession number show yet?"""

    def __init__(self, server: Pedipacs) -> None:
        ae = AE(ae_title=SCU_AE_TITLE)
        ae.add_requested_context(ModalityWorklistInformationFind)
        self._assoc: Any = ae.associate(LOOPBACK, server.dicom_port, ae_title=server.ae_title)
        if not self._assoc.is_established:
            raise RuntimeError("pedipacs refused the worklist association")
        self._assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def shows(self, accession: str) -> bool:
        query = Dataset()
        query.AccessionNumber = accession
        query.StudyInstanceUID = ""
        item = Dataset()
        item.ScheduledStationAETitle = STATION
        item.Modality = ""
        query.ScheduledProcedureStepSequence = [item]
        found = 0
        for status, _ in self._assoc.send_c_find(query, ModalityWorklistInformationFind):
            code = int(status.Status) if status else -1
            if code in PENDING:
                found += 1
            elif code != 0:
                raise RuntimeError(f"worklist C-FIND answered 0x{code:04X}")
        return found == 1

    def release(self) -> None:
        self._assoc.release()


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--orders", type=int, default=300, help="orders timed one by one")
    parser.add_argument("--burst", type=int, default=2000, help="orders sent back to back")
    parser.add_argument("--work-dir", type=Path, help="where the server stores (default: temp)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pedipacs-hl7-", dir=args.work_dir))
    today = date.today()
    with Hl7Pedipacs(workdir / "server") as server:
        connection = MllpConnection(server.hl7_port)
        worklist = Worklist(server)
        try:
            for n in range(PATIENTS):
                if connection.exchange(adt(n)) != "AA":
                    raise RuntimeError(f"ADT {n} was not accepted")
            for n in range(10):  # warm-up
                connection.exchange(orm(n, today)[0])
            say(f"timing {args.orders} orders to the worklist")
            latencies: list[float] = []
            with BackgroundLoad(server) as latency_load:
                for n in range(10, 10 + args.orders):
                    message, accession = orm(n, today)
                    started = time.perf_counter()
                    code = connection.exchange(message)
                    visible = worklist.shows(accession)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if code != "AA" or not visible:
                        raise RuntimeError(f"order {accession}: ACK {code}, visible {visible}")
            say(f"sending {args.burst} orders back to back")
            first = 10 + args.orders
            messages = [orm(n, today)[0] for n in range(first, first + args.burst)]
            with BackgroundLoad(server) as burst_load:
                started = time.perf_counter()
                codes = [connection.exchange(message) for message in messages]
                seconds = time.perf_counter() - started
            if set(codes) != {"AA"}:
                raise RuntimeError(f"acknowledgements in the burst: {sorted(set(codes))}")
        finally:
            worklist.release()
            connection.close()
    p50, p95 = statistics.median(latencies), percentile(latencies, 95)
    rate = args.burst / seconds
    print(f"\nHL7 orders, pedipacs on SQLite, {os.cpu_count()} cores, {PATIENTS} patients")
    print(
        f"ORM^O01 to visible worklist item ({args.orders} orders): p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms; target p95 < {LATENCY_TARGET_P95_MS:.0f} ms: "
        f"{'met' if p95 < LATENCY_TARGET_P95_MS else 'NOT met'} "
        f"(background {latency_load.cores:.2f} cores)"
    )
    print(
        f"ORM^O01 on one connection ({args.burst} orders): {rate:.0f} messages/s; target >= "
        f"{THROUGHPUT_TARGET:.0f}: {'met' if rate >= THROUGHPUT_TARGET else 'NOT met'} "
        f"(background {burst_load.cores:.2f} cores)"
    )
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
