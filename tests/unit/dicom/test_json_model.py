"""DICOM JSON (PS3.18 F) of every pydicom test file, checked against pydicom's own encoder."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from pydicom import dcmread

from pedipacs.dicom.header import read_dataset_header
from pedipacs.dicom.json_model import INSTANCE_URI_MARK, metadata_json, with_instance_uri
from pedipacs.errors import PedipacsError
from support.files import PYDICOM_TEST_FILES

FILES = sorted(PYDICOM_TEST_FILES.glob("*.dcm"))


def comparable(value: Any) -> Any:
    """Values as both encoders agree to write them: trailing spaces and empty strings aside
    (PS3.18 F.2.5 writes an empty value of a multi-valued attribute as null)."""
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("vr", "InlineBinary")}
    if isinstance(value, str):
        return value.rstrip(" ") or None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_metadata_values_match_pydicom_json(path: Any) -> None:
    data = path.read_bytes()
    try:
        header = read_dataset_header(data)
    except PedipacsError:
        pytest.skip("not a readable Part 10 object (refused at ingest)")
    ours = json.loads(metadata_json(header, data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reference = dcmread(path).to_json_dict(
            bulk_data_element_handler=lambda _: "bulk", suppress_invalid_tags=True
        )
    if caught:
        pytest.skip(f"pydicom reads this file only with a warning: {caught[0].message}")

    for key, element in reference.items():
        if key.endswith("0000") or "BulkDataURI" in element or "InlineBinary" in element:
            continue
        assert key in ours, key
        if element.get("vr") == "SQ":
            assert len(ours[key].get("Value", [])) == len(element.get("Value", [])), key
            continue
        assert comparable(ours[key].get("Value")) == comparable(element.get("Value")), key


def test_pixel_data_is_a_bulk_data_uri_made_absolute_for_the_instance() -> None:
    data = (PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()

    stored = metadata_json(read_dataset_header(data), data)
    served = json.loads(
        with_instance_uri(stored, "http://pacs/dicomweb/studies/1/series/2/instances/3")
    )

    assert f'"{INSTANCE_URI_MARK}/bulkdata/7FE00010"' in stored
    assert served["7FE00010"] == {
        "vr": "OW",
        "BulkDataURI": "http://pacs/dicomweb/studies/1/series/2/instances/3/bulkdata/7FE00010",
    }


def test_person_names_keep_their_groups_and_utf8_text() -> None:
    data = (PYDICOM_TEST_FILES / "test-SR.dcm").read_bytes()

    metadata = json.loads(metadata_json(read_dataset_header(data), data))

    observer = metadata["0040A073"]["Value"][0]["0040A075"]
    assert observer == {"vr": "PN", "Value": [{"Alphabetic": "Riesmeier^Jörg"}]}
