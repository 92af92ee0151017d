"""Modality Worklist C-FIND against a running `pedipacs serve`: orders placed through the RIS
services, then DCMTK `findscu -W` as a modality asks (by its station AE title, modality and
date range), its responses read with pydicom. Modalities are registered peers granted the
worklist; a peer without that grant gets 0x0124."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pedipacs.model.ris import OrderSummary
from support.databases import fresh_database
from support.dcmtk import findscu_outcome, run
from support.server import RunningServer, start_server
from support.worklist import schedule_on

NOT_AUTHORIZED = 0x0124
SUCCESS = 0x0000
MODALITY = "US_ED_1"  # a registered modality, granted the worklist
SPS = "ScheduledProcedureStepSequence"
# The return keys a modality asks for (PS3.4 K.6), empty: returned whatever matched.
RETURN_KEYS = [
    "PatientName=", "PatientID=", "IssuerOfPatientID=", "PatientBirthDate=", "PatientSex=",
    "PatientAge=", "PatientWeight=", "AccessionNumber=", "ReferringPhysicianName=",
    "ReasonForTheRequestedProcedure=", "RequestedProcedurePriority=", "RequestedProcedureID=",
    "RequestedProcedureDescription=", "StudyInstanceUID=", "RequestedProcedureCodeSequence",
    *(
        f"{SPS}[0].{keyword}="
        for keyword in (
            "ScheduledStationAETitle", "ScheduledStationName", "ScheduledProcedureStepStartDate",
            "ScheduledProcedureStepStartTime", "Modality", "ScheduledPerformingPhysicianName",
            "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
            "ScheduledProcedureStepStatus",
        )
    ),
]  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def worklist_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    dcmtk: None,
) -> Iterator[tuple[RunningServer, dict[str, OrderSummary]]]:
    """A server refusing unknown calling AEs, with a modality granted the worklist, FINDSCU
    granted C-FIND only, and the orders of support.worklist scheduled."""
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    directory = tmp_path_factory.mktemp(f"worklist_{request.param}")
    with fresh_database(request.param, directory) as url:
        server = start_server(
            directory / "server", url, extra_env={"PEDIPACS_ACCEPT_UNKNOWN_CALLING_AES": "false"}
        )
        try:
            server.register_peer(MODALITY, allow="worklist")
            server.register_peer("FINDSCU", allow="find")
            yield server, schedule_on(url)
        finally:
            server.stop()


def worklist(server: RunningServer, keys: list[str], output_dir: Path) -> list[Dataset]:
    """`findscu -W` as the modality; the response identifiers, by Scheduled Procedure Step ID."""
    output_dir.mkdir(parents=True, exist_ok=True)
    args = ["findscu", "-W", "-aet", MODALITY, "-aec", server.ae_title, "-X", "-od",
            str(output_dir)]  # fmt: skip
    for key in [*RETURN_KEYS, *keys]:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", str(server.dicom_port)])
    assert result.returncode == 0, result.stderr[-4000:]
    responses = [dcmread(path) for path in output_dir.glob("rsp*.dcm")]
    return sorted(responses, key=lambda r: str(r[SPS][0].ScheduledProcedureStepID))


def step_ids(responses: list[Dataset]) -> list[str]:
    return [str(r[SPS][0].ScheduledProcedureStepID) for r in responses]


def test_a_modality_gets_exactly_the_items_scheduled_on_its_station(
    worklist_server: tuple[RunningServer, dict[str, OrderSummary]], tmp_path: Path
) -> None:
    server, _ = worklist_server

    responses = worklist(server, [f"{SPS}[0].ScheduledStationAETitle={MODALITY}"], tmp_path)

    # A1005 was on this station too, but its order was cancelled.
    assert step_ids(responses) == ["S1001", "S1003"]
    assert all(r[SPS][0].ScheduledStationAETitle == MODALITY for r in responses)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            [f"{SPS}[0].ScheduledStationAETitle={MODALITY}",
             f"{SPS}[0].ScheduledProcedureStepStartDate=20261125-20261125"],
            ["S1001"],
        ),
        ([f"{SPS}[0].ScheduledProcedureStepStartDate=20261126-20261127"],
         ["S1003", "S1004", "S1006A", "S1006B"]),
        ([f"{SPS}[0].Modality=US"], ["S1001", "S1003", "S1006A"]),
        (
            [f"{SPS}[0].Modality=DX", f"{SPS}[0].ScheduledProcedureStepStartDate=20261126-"],
            ["S1004", "S1006B"],
        ),
        ([f"{SPS}[0].ScheduledStationAETitle={MODALITY}", f"{SPS}[0].Modality=CT"], []),
        (["PatientName=okoro*"], ["S1002"]),
        (["AccessionNumber=A1006"], ["S1006A", "S1006B"]),
        (["RequestedProcedureID=RP1004"], ["S1004"]),
    ],
    ids=["station_and_day", "date_range", "modality", "modality_and_open_range",
         "station_and_other_modality", "patient_name", "accession_number",
         "requested_procedure_id"],
)  # fmt: skip
def test_matching_keys_a_modality_uses_select_exactly_the_scheduled_steps(
    worklist_server: tuple[RunningServer, dict[str, OrderSummary]],
    tmp_path: Path,
    keys: list[str],
    expected: list[str],
) -> None:
    server, _ = worklist_server

    assert step_ids(worklist(server, keys, tmp_path)) == expected


def test_each_item_carries_the_k6_return_keys_with_the_step_nested_in_its_sequence(
    worklist_server: tuple[RunningServer, dict[str, OrderSummary]], tmp_path: Path
) -> None:
    server, orders = worklist_server

    stat, newborn = worklist(server, [f"{SPS}[0].ScheduledStationAETitle={MODALITY}"], tmp_path)

    assert (stat.PatientName, stat.PatientID, stat.IssuerOfPatientID) == (
        "NGUYEN^LAN", "MRN2001", "CHILDRENS",
    )  # fmt: skip
    assert (stat.PatientBirthDate, stat.PatientSex, stat.PatientAge) == ("20250520", "F", "018M")
    assert float(stat.PatientWeight) == pytest.approx(11.2)
    assert stat.AccessionNumber == "A1001"
    assert stat.StudyInstanceUID == "2.25.1001"
    assert stat.RequestedProcedureID == "RP1001"
    assert stat.RequestedProcedureDescription == "US abdomen"
    assert stat.RequestedProcedurePriority == "STAT"
    assert stat.ReasonForTheRequestedProcedure == "Suspected intussusception"
    assert stat.ReferringPhysicianName == "OKAFOR^ADA"
    (code,) = stat.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "RPID1001", "99PEDI", "US abdomen, paediatric",
    )  # fmt: skip
    (step,) = stat[SPS]
    assert step.ScheduledStationAETitle == MODALITY
    assert step.ScheduledStationName == "ED US 1"
    assert step.ScheduledProcedureStepStartDate == "20261125"
    assert step.ScheduledProcedureStepStartTime == "093000"
    assert step.Modality == "US"
    assert step.ScheduledPerformingPhysicianName == "BAKER^SAM"
    assert step.ScheduledProcedureStepDescription == "US abdomen"
    assert step.ScheduledProcedureStepID == "S1001"
    assert step.ScheduledProcedureStepStatus == "SCHEDULED"
    # A worklist answer names no query level and no retrieve AE.
    assert "QueryRetrieveLevel" not in stat and "RetrieveAETitle" not in stat
    # The newborn's order gave no Study Instance UID: the modality gets the one pedipacs made up.
    assert newborn.StudyInstanceUID == orders["A1003"].study_instance_uids[0]
    assert (newborn.PatientAge, newborn.RequestedProcedurePriority) == ("006D", "HIGH")
    assert float(newborn.PatientWeight) == pytest.approx(3.4)
    assert newborn.RequestedProcedureCodeSequence == []


def test_a_name_outside_ascii_is_answered_in_utf8(
    worklist_server: tuple[RunningServer, dict[str, OrderSummary]], tmp_path: Path
) -> None:
    server, _ = worklist_server

    responses = worklist(server, ["PatientID=MRN2004", f"{SPS}[0].Modality=DX"], tmp_path)

    assert step_ids(responses) == ["S1004", "S1006B"]
    assert all(r.SpecificCharacterSet == "ISO_IR 192" for r in responses)
    assert all(r.PatientName == "MÜLLER^LENA" for r in responses)


def test_a_cancelled_order_is_not_on_the_worklist(
    worklist_server: tuple[RunningServer, dict[str, OrderSummary]], tmp_path: Path
) -> None:
    server, orders = worklist_server

    assert worklist(server, ["AccessionNumber=A1005"], tmp_path) == []
    assert str(orders["A1005"].status) == "cancelled"


def test_a_peer_without_the_worklist_grant_is_refused_with_0124_and_the_refusal_audited(
    worklist_server: tuple[RunningServer, dict[str, OrderSummary]], tmp_path: Path
) -> None:
    server, _ = worklist_server

    refused = findscu_outcome(
        server, [f"{SPS}[0].ScheduledStationAETitle={MODALITY}"], tmp_path / "mwl", model="-W"
    )
    studies = findscu_outcome(
        server, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID="], tmp_path / "qr", model="-S"
    )

    assert refused.status == NOT_AUTHORIZED
    assert refused.responses == []
    assert studies.status == SUCCESS  # FINDSCU keeps the C-FIND it was granted
    assert any("worklist by FINDSCU" in alert for alert in server.security_alerts())
