"""Run DCMTK tools against a server and read what they wrote with pydicom."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from support.server import RunningServer

# storescu proposes compressed syntaxes only when told to; one flag per transfer syntax.
STORESCU_PROPOSAL_FLAG = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.201": "-xh",
    "1.2.840.10008.1.2.4.202": "-xh",
    "1.2.840.10008.1.2.4.203": "-xh",
}


def run(args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def storescu(
    server: RunningServer,
    files: Sequence[Path],
    *,
    transfer_syntax: str | None = None,
    calling_ae: str = "STORESCU",
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Send files on one association; `transfer_syntax` picks the proposal flag."""
    flags = (
        ["-R"] if transfer_syntax is None else [STORESCU_PROPOSAL_FLAG.get(transfer_syntax, "-R")]
    )
    return run(
        [
            "storescu",
            *flags,
            "-nh",
            "-aet",
            calling_ae,
            "-aec",
            server.ae_title,
            *extra,
            "127.0.0.1",
            str(server.dicom_port),
            *map(str, files),
        ]
    )


def findscu(
    server: RunningServer,
    keys: Sequence[str],
    output_dir: Path,
    *,
    model: str = "-S",
) -> tuple[subprocess.CompletedProcess[str], list[Dataset]]:
    """C-FIND; returns the tool's result and the response identifiers it extracted."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("*"):
        old.unlink()
    args = ["findscu", model, "-aec", server.ae_title, "-X", "-od", str(output_dir)]
    for key in keys:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", str(server.dicom_port)])
    responses: list[Dataset] = [dcmread(p) for p in sorted(output_dir.glob("rsp*.dcm"))]
    return result, responses


@dataclass(frozen=True)
class FindOutcome:
    status: int | None
    error_comment: str | None
    responses: Sequence[Dataset]
    log: str


def findscu_outcome(
    server: RunningServer, keys: Sequence[str], output_dir: Path, *, model: str = "-S"
) -> FindOutcome:
    """Run findscu; return the final C-FIND status, its Error Comment and the identifiers.

    findscu 3.6.7 exits 0 whatever the final status, and writes only pending identifiers with
    `-X`, so the final response is read from its debug dump of the incoming DIMSE message
    (`DIMSE Status : 0xa900: ...`, then the status detail with `(0000,0902) ... ErrorComment`).
    `output_dir` should be new: every `rsp*.dcm` in it is read as a response.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    args = ["findscu", model, "-d", "-aec", server.ae_title, "-X", "-od", str(output_dir)]
    for key in keys:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", str(server.dicom_port)])
    assert result.returncode == 0, result.stderr[-4000:]
    responses = [dcmread(path) for path in sorted(output_dir.glob("rsp*.dcm"))]
    lines = result.stderr.splitlines()
    final = max(
        (i for i, line in enumerate(lines) if "Received Final Find Response" in line), default=None
    )
    assert final is not None, result.stderr[-4000:]
    status = error_comment = None
    for line in lines[final:]:
        label, _, value = line.removeprefix("D: ").partition(":")
        if label.strip() == "DIMSE Status" and status is None:
            status = int(value.strip().split(":")[0], 16)
        if line.rstrip().endswith(" ErrorComment") and "[" in line:
            # Trailing spaces pad the value to an even length (PS3.5 6.2).
            error_comment = line[line.index("[") + 1 : line.rindex("]")].rstrip()
    return FindOutcome(status, error_comment, responses, result.stderr)


def store_statuses(
    server: RunningServer,
    path: Path,
    *,
    transfer_syntax: str | None = None,
    calling_ae: str = "STORESCU",
) -> list[int]:
    """C-STORE one file; the DIMSE status of each response, from DCMTK's debug dump."""
    flags = ["-R", "-aet", calling_ae]
    if transfer_syntax in STORESCU_PROPOSAL_FLAG:
        flags.append(STORESCU_PROPOSAL_FLAG[transfer_syntax])
    result = run(
        [
            "storescu",
            "-d",
            *flags,
            "-aec",
            server.ae_title,
            "127.0.0.1",
            str(server.dicom_port),
            str(path),
        ]
    )
    statuses = []
    for line in result.stdout.splitlines() + result.stderr.splitlines():
        # DCMTK's dump of each C-STORE-RSP: "D: DIMSE Status                  : 0xa900: ..."
        if line.startswith("D: DIMSE Status"):
            statuses.append(int(line.split(":", 2)[2].strip()[:6], 16))
    return statuses


# getscu/movescu preference flag that makes the retriever accept a stored syntax first.
GETSCU_PREFERENCE_FLAG = {
    "1.2.840.10008.1.2": "+xi",
    "1.2.840.10008.1.2.1": "+xe",
    "1.2.840.10008.1.2.2": "+xb",
    "1.2.840.10008.1.2.1.99": "+xd",
    "1.2.840.10008.1.2.4.50": "+xy",
    "1.2.840.10008.1.2.4.51": "+xx",
    "1.2.840.10008.1.2.4.57": "+xs",
    "1.2.840.10008.1.2.4.70": "+xs",
    "1.2.840.10008.1.2.4.80": "+xt",
    "1.2.840.10008.1.2.4.81": "+xu",
    "1.2.840.10008.1.2.4.90": "+xv",
    "1.2.840.10008.1.2.4.91": "+xw",
    "1.2.840.10008.1.2.5": "+xr",
}


def getscu(
    server: RunningServer,
    keys: Sequence[str],
    output_dir: Path,
    *,
    prefer: str | None = None,
    model: str = "-S",
) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    """C-GET into `output_dir`, bit-preserving; returns the result and the files received."""
    output_dir.mkdir(parents=True, exist_ok=True)
    flags = [GETSCU_PREFERENCE_FLAG[prefer]] if prefer in GETSCU_PREFERENCE_FLAG else []
    args = ["getscu", model, *flags, "+B", "-aec", server.ae_title, "-od", str(output_dir)]
    for key in keys:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", str(server.dicom_port)])
    return result, sorted(output_dir.iterdir())
