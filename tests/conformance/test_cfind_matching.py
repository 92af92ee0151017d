"""PS3.4 C.2.2.2 matching through the DIMSE door: findscu against a running `pedipacs serve`.

One server per database for the module (`conftest.loaded_server`), the conformance data set
stored once with storescu, then every case of `conformance.cases` as one findscu run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cases import (
    INVALID_CASES,
    MATCHING_CASES,
    PATIENTS,
    STUDIES,
    InvalidCase,
    MatchingCase,
    identifier_keys,
    text_value,
)
from pedipacs.model.levels import InformationModel
from support.dcmtk import FindOutcome, findscu_outcome
from support.server import RunningServer

FINDSCU_MODEL_FLAG = {InformationModel.PATIENT_ROOT: "-P", InformationModel.STUDY_ROOT: "-S"}
SUCCESS = 0x0000
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900


def find(
    server: RunningServer, model: InformationModel, keys: list[str], output_dir: Path
) -> FindOutcome:
    """Run findscu with the model's flag; the final status, its Error Comment, the identifiers."""
    return findscu_outcome(server, keys, output_dir, model=FINDSCU_MODEL_FLAG[model])


def test_every_stored_instance_is_counted_by_a_patient_level_query(
    loaded_server: RunningServer, tmp_path: Path
) -> None:
    outcome = find(
        loaded_server,
        InformationModel.PATIENT_ROOT,
        ["QueryRetrieveLevel=PATIENT", "PatientID=", "NumberOfPatientRelatedInstances="],
        tmp_path,
    )

    assert outcome.status == SUCCESS
    assert len(outcome.responses) == len(PATIENTS)
    stored = sum(series.instances for study in STUDIES for series in study.series)
    assert sum(int(r.NumberOfPatientRelatedInstances) for r in outcome.responses) == stored


@pytest.mark.parametrize("case", MATCHING_CASES, ids=lambda case: case.name)
def test_cfind_returns_exactly_the_entities_the_case_expects(
    loaded_server: RunningServer, case: MatchingCase, tmp_path: Path
) -> None:
    outcome = find(
        loaded_server, case.model, identifier_keys(str(case.level), case.request_keys), tmp_path
    )

    assert outcome.status == SUCCESS, (outcome.error_comment, outcome.log[-2000:])
    found = [text_value(response.get(case.unique_keyword)) for response in outcome.responses]
    assert sorted(found) == sorted(case.expected)
    assert all(r.QueryRetrieveLevel == str(case.level) for r in outcome.responses)
    by_unique_key = dict(zip(found, outcome.responses, strict=True))
    for unique_key, attributes in case.returned.items():
        response = by_unique_key[unique_key]
        assert set(attributes) <= set(response.dir()), "a requested key is missing"
        assert {keyword: text_value(response.get(keyword)) for keyword in attributes} == attributes


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.name)
def test_cfind_refuses_an_invalid_identifier_with_a_failure_status(
    loaded_server: RunningServer, case: InvalidCase, tmp_path: Path
) -> None:
    outcome = find(loaded_server, case.model, identifier_keys(case.level, case.keys), tmp_path)

    assert outcome.status == IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, outcome.log[-2000:]
    assert outcome.error_comment, "the failure carries no Error Comment"
    assert list(outcome.responses) == []
