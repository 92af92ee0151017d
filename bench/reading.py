"""The reading worklist and report distribution, against the issue's targets:

- the reading worklist with 5,000 open exams: server time p95 under 100 ms;
- a report signed to its ORU^R01 delivered to a listening receiver: p95 under 1 s.

The exams are made through the services in a fresh SQLite database (patients registered,
orders placed with a mix of priorities, patient classes and points of care, one image each
stored through the ingest service; some with a draft or preliminary report, some claimed).
Then `pedipacs serve` answers, with every request authenticated as a radiologist:

- `api`: `GET /api/reading-worklist` (first page of 50, most urgent first), then with a
  modality filter, then the third page;
- `page`: `GET /reading`, the radiologists' HTML page (when the server has it);

each timed from the request to the last byte on one keep-alive connection (what the
server spends; the client is on the same machine). The server's own time is also read from
`Server-Timing` when it sends one.

For distribution, a receiver listening on MLLP acknowledges each ORU^R01 (AA); each report is
signed with `POST /api/reports/{accession}/sign` and the time to the message's arrival is taken.

    .venv/bin/python bench/reading.py                        # 5,000 exams, 200 requests, 100 signs
    .venv/bin/python bench/reading.py --exams 500 --requests 30 --signs 10   # smoke run

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

import httpx
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

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
from pedipacs.reports.authoring import ReportDraft
from peers import LOOPBACK, Pedipacs, free_port
from runner import say

TARGET_WORKLIST_P95_MS = 100.0
TARGET_ORU_P95_MS = 1000.0
WARMUP = 5
MODALITIES = ("US", "DX", "CT", "MR", "US", "DX")  # ultrasound and radiographs dominate
CLASSES = ("O", "O", "I", "E", "O", "I", "O")
LOCATIONS = (None, None, "PICU", "NICU", None, "WARD 3", None, "ED")
SECTIONS = {
    "clinical_information": "Fever and right iliac fossa pain.",
    "findings": "Non-compressible appendix, 9 mm.",
    "impression": "Acute appendicitis.",
}
VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def _image(
    number: int, patient: PatientIdentity, accession: str, study: str, modality: str
) -> bytes:
    dataset = dcmread(get_testdata_file("CT_small.dcm", download=False))
    dataset.PatientID, dataset.IssuerOfPatientID = patient.identifier, patient.issuer
    dataset.PatientName = f"CHILD{number:06d}^BENCH"
    dataset.AccessionNumber = accession
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.Modality = modality
    buffer = BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def populate(data_dir: Path, exams: int) -> float:
    """`exams` open exams with images, through the services; the seconds it took."""
    node = Node.from_settings(Settings(data_dir=data_dir, dicom_workers=1))
    his, modality = Origin.cli("bench"), Origin.dimse("MOD", "PEDIPACS", LOOPBACK)
    radiologist = Origin.http("bench", LOOPBACK)
    started = time.perf_counter()
    try:
        node.migrate()
        for n in range(exams):
            patient = PatientIdentity(f"MRN{n // 2:06d}", "BENCH")
            if n % 2 == 0:
                birth = date(2012, 1, 1) + timedelta(days=(n * 37) % 5000)
                node.patients.register(
                    PatientRegistration((patient,), f"CHILD{n:06d}^BENCH", birth, sex="FM"[n % 2]),
                    his,
                )
            accession, study = f"R{n:07d}", generate_uid()
            kind = MODALITIES[n % len(MODALITIES)]
            step = ScheduledStepRequest(f"S{n:07d}", modality=kind, station_ae_title="MOD01")
            order = OrderRequest(
                patient=patient,
                accession_number=accession,
                priority=Priority.STAT if n % 25 == 0 else Priority.ASAP if n % 9 == 0
                else Priority.ROUTINE,
                reason="Bench exam",
                referring_physician="OKAFOR^ADA",
                patient_class=CLASSES[n % len(CLASSES)],
                patient_location=LOCATIONS[n % len(LOCATIONS)],
                ordering_department="EMERGENCY" if n % 7 == 0 else "PAEDIATRICS",
                procedures=(ProcedureRequest(f"RP{n:07d}", "Bench procedure",
                                             study_instance_uid=study, steps=(step,)),),
            )  # fmt: skip
            node.orders.place(order, his)
            node.ingest.ingest(_image(n, patient, accession, study, kind), modality)
            if n % 10 == 3:
                node.reports.save(accession, ReportDraft(SECTIONS), replace(radiologist,
                                  user=f"reader{n % 4}"))  # fmt: skip
            elif n % 10 == 7:
                node.reports.sign(accession, ReportDraft(SECTIONS), radiologist, is_final=False)
            if n and n % 1000 == 0:
                say(f"  {n} exams made")
    finally:
        node.stop()
    return time.perf_counter() - started


def percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def time_requests(client: httpx.Client, paths: list[str], count: int) -> list[float] | None:
    """Milliseconds of `count` GETs cycling through `paths`; None when the route is missing."""
    if client.get(paths[0]).status_code == 404:
        return None
    for i in range(WARMUP):
        client.get(paths[i % len(paths)]).raise_for_status()
    timings = []
    for i in range(count):
        started = time.perf_counter()
        response = client.get(paths[i % len(paths)])
        response.read()
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


class _Receiver(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.arrivals: dict[str, float] = {}  # accession -> perf_counter at arrival
        self.arrived = threading.Condition()
        super().__init__((LOOPBACK, port), _ReceiverHandler)


class _ReceiverHandler(socketserver.BaseRequestHandler):
    server: _Receiver

    def handle(self) -> None:
        buffer = b""
        while chunk := self.request.recv(65536):
            buffer += chunk
            while FS in buffer:
                framed, buffer = buffer.split(FS, 1)
                buffer = buffer.removeprefix(CR)
                message = framed.split(VT, 1)[-1].decode()
                now = time.perf_counter()
                obr = next(s for s in message.split("\r") if s.startswith("OBR|")).split("|")
                control = message.split("\r", 1)[0].split("|")[9]
                ack = (
                    f"MSH|^~\\&|HIS||PEDIPACS||20261207||ACK|A{control}|P|2.5.1\rMSA|AA|{control}\r"
                )
                self.request.sendall(VT + ack.encode() + FS + CR)
                with self.server.arrived:
                    self.server.arrivals[obr[18]] = now
                    self.server.arrived.notify_all()


def time_distribution(client: httpx.Client, receiver: _Receiver, signs: int) -> list[float]:
    """Milliseconds from `POST .../sign` sent to the ORU^R01 received, for `signs` exams."""
    waiting = client.get("/api/reading-worklist", params={"limit": 200}).json()["items"]
    unreported = [i["accessionNumber"] for i in waiting if i["reportStatus"] is None]
    timings = []
    for accession in unreported[: signs + WARMUP]:
        started = time.perf_counter()
        client.post(f"/api/reports/{accession}/sign",
                    json={"sections": SECTIONS, "final": True}).raise_for_status()  # fmt: skip
        with receiver.arrived:
            if not receiver.arrived.wait_for(lambda a=accession: a in receiver.arrivals, 30):
                raise RuntimeError(f"no ORU^R01 for {accession} within 30 s")
        timings.append((receiver.arrivals[accession] - started) * 1000)
    return timings[WARMUP:]


class ReportingPedipacs(Pedipacs):
    """pedipacs with an HL7 receiver for released reports."""

    def __init__(self, workdir: Path, receiver_port: int) -> None:
        super().__init__(workdir)
        self.receiver_port = receiver_port

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "PEDIPACS_HL7_REPORT_RECEIVERS": json.dumps([f"{LOOPBACK}:{self.receiver_port}"]),
            "PEDIPACS_STORE_REPORT_OBJECTS": "false",  # the ORU alone is measured
        }


def line(name: str, timings: list[float] | None, target: float | None = None) -> str:
    if timings is None:
        return f"{name:<34} (not served)"
    p50, p95 = percentile(timings, 50), percentile(timings, 95)
    verdict = "" if target is None else ("  met" if p95 < target else "  NOT met")
    return f"{name:<34} {p50:>8.1f} ms {p95:>8.1f} ms{verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--exams", type=int, default=5_000, help="open exams")
    parser.add_argument("--requests", type=int, default=200, help="timed requests of each kind")
    parser.add_argument("--signs", type=int, default=100, help="reports signed for the ORU timing")
    parser.add_argument("--work-dir", type=Path, help="where the server stores (default: temp)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pedipacs-reading-", dir=args.work_dir))
    say(f"making {args.exams:,} open exams in {workdir}")
    seconds = populate(workdir / "server" / "data", args.exams)
    receiver = _Receiver(free_port())
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    results: dict[str, list[float] | None] = {}
    try:
        with ReportingPedipacs(workdir / "server", receiver.server_address[1]) as server:
            base = f"http://{LOOPBACK}:{server.http_port}"
            with httpx.Client(base_url=base, headers=server.http_headers, timeout=60) as client, \
                    BackgroundLoad(server) as background:  # fmt: skip
                say(f"timing {args.requests} requests of each kind")
                results["api, first page"] = time_requests(
                    client, ["/api/reading-worklist"], args.requests
                )
                filtered = [f"/api/reading-worklist?modality={m}" for m in ("US", "DX")]
                results["api, modality filter"] = time_requests(client, filtered, args.requests)
                results["api, third page"] = time_requests(
                    client, ["/api/reading-worklist?offset=100"], args.requests
                )
                results["page /reading"] = time_requests(client, ["/reading"], args.requests)
                say(f"signing {args.signs} reports")
                results["signed -> ORU^R01 received"] = time_distribution(
                    client, receiver, args.signs
                )
    finally:
        receiver.shutdown()
    print(f"\nReading worklist, {args.exams:,} open exams (SQLite), {os.cpu_count()} cores; "
          f"made in {seconds:.0f} s; background load {background.cores:.2f} cores")  # fmt: skip
    print(f"{'':<34} {'p50':>11} {'p95':>11}")
    for name, timings in results.items():
        target = TARGET_ORU_P95_MS if "ORU" in name else TARGET_WORKLIST_P95_MS
        print(line(name, timings, target))
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
