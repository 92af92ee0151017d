"""Bad DICOMweb requests get the right 4xx with a reason in the body, and store nothing."""

from __future__ import annotations

from io import BytesIO

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from support.files import PYDICOM_TEST_FILES
from support.server import RunningServer

DICOM_PARTS = 'multipart/related; type="application/dicom"; boundary=b0undary'
CT_SMALL = PYDICOM_TEST_FILES / "CT_small.dcm"
CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def stow(
    server: RunningServer, body: bytes, content_type: str = DICOM_PARTS, path: str = ""
) -> httpx.Response:
    return server.post(
        f"{server.http_url}/dicomweb/studies{path}",
        content=body,
        headers={"Content-Type": content_type},
        timeout=60,
    )


def part(data: bytes, content_type: str = "application/dicom") -> bytes:
    return b"--b0undary\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + data + b"\r\n"


CLOSE = b"--b0undary--\r\n"


def study_count(server: RunningServer) -> int:
    response = server.get(f"{server.http_url}/dicomweb/studies", params={"limit": "1000"})
    return len(response.json())


def assert_refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["detail"], "the refusal carries no reason"


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        (
            "no boundary parameter",
            part(b"x") + CLOSE,
            'multipart/related; type="application/dicom"',
        ),
        ("not multipart at all", CT_SMALL.read_bytes(), "application/dicom"),
        ("body without the announced boundary", b"--other\r\n\r\nx\r\n--other--\r\n", DICOM_PARTS),
        ("missing closing boundary", part(CT_SMALL.read_bytes()), DICOM_PARTS),
        (
            "part without a blank line after its headers",
            b"--b0undary\r\nContent-Type: x" + CLOSE,
            DICOM_PARTS,
        ),
        ("no part at all", CLOSE, DICOM_PARTS),
    ],
)
def test_malformed_multipart_is_refused_with_400_and_stores_nothing(
    web_server: RunningServer, name: str, body: bytes, content_type: str
) -> None:
    before = study_count(web_server)

    response = stow(web_server, body, content_type)

    assert_refused(response, 400)
    assert study_count(web_server) == before, name


def test_parts_of_another_media_type_are_refused_with_415(web_server: RunningServer) -> None:
    response = stow(
        web_server,
        part(b"{}") + CLOSE,
        'multipart/related; type="application/dicom+json"; boundary=b0undary',
    )

    assert_refused(response, 415)


def test_a_part_that_is_not_dicom_fails_with_reason_c000_and_nothing_is_stored(
    web_server: RunningServer,
) -> None:
    before = study_count(web_server)

    response = stow(
        web_server, part(b"this is not a DICOM file") + part(b"{}", "text/plain") + CLOSE
    )

    assert response.status_code == 409, response.text
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"] for item in failed] == [[0xC000], [0xC000]]
    assert "00081199" not in response.json()
    assert study_count(web_server) == before


def test_a_good_and_a_bad_part_give_202_with_both_listed(web_server: RunningServer) -> None:
    response = stow(web_server, part(CT_SMALL.read_bytes()) + part(b"garbage" * 20) + CLOSE)

    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_an_instance_of_another_study_than_the_url_names_is_refused(
    web_server: RunningServer,
) -> None:
    other_study = generate_uid()

    response = stow(web_server, part(CT_SMALL.read_bytes()) + CLOSE, path=f"/{other_study}")

    assert response.status_code == 409, response.text
    failed = response.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [0xC409]
    search = web_server.get(
        f"{web_server.http_url}/dicomweb/studies", params={"StudyInstanceUID": other_study}
    )
    assert search.json() == []


def test_truncated_dicom_part_is_refused_and_leaves_no_half_stored_instance(
    web_server: RunningServer,
) -> None:
    dataset = dcmread(CT_SMALL)
    dataset.StudyInstanceUID = generate_uid()
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()

    response = stow(web_server, part(data[: len(data) // 2]) + CLOSE)

    assert response.status_code == 409, response.text
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    search = web_server.get(
        f"{web_server.http_url}/dicomweb/studies",
        params={"StudyInstanceUID": dataset.StudyInstanceUID},
    )
    assert search.json() == []


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=ten",
        "offset=x",
        "NotAnAttribute=1",
        "StudyDate=2020*",
        "StudyDate=20201301",
        "StudyTime=2561",
        "fuzzymatching=maybe",
        "Modality=CT",  # a series key cannot narrow a study search
        "includefield=NoSuchKeyword",
        "PatientName=%27%3B%20DROP%20TABLE%20patient%3B--",  # harmless: matches nothing
    ],
)
def test_invalid_qido_parameters_get_400_with_a_reason(
    web_server: RunningServer, query: str
) -> None:
    response = web_server.get(f"{web_server.http_url}/dicomweb/studies?{query}")

    if query.startswith("PatientName"):
        assert response.status_code == 200 and response.json() == []
        return
    assert_refused(response, 400)


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/studies", "application/dicom+xml"),
        (f"/studies/{CT_SMALL_STUDY}/metadata", 'multipart/related; type="application/dicom+xml"'),
        (f"/studies/{CT_SMALL_STUDY}", "image/png"),
        (
            f"/studies/{CT_SMALL_STUDY}",
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4.5',
        ),
    ],
)
def test_an_accept_the_server_cannot_satisfy_gets_406(
    web_server: RunningServer, path: str, accept: str
) -> None:
    web_server.post(
        f"{web_server.http_url}/dicomweb/studies",
        content=part(CT_SMALL.read_bytes()) + CLOSE,
        headers={"Content-Type": DICOM_PARTS},
    )

    response = web_server.get(f"{web_server.http_url}/dicomweb{path}", headers={"Accept": accept})

    assert_refused(response, 406)


@pytest.mark.parametrize(
    "path",
    [
        f"/studies/{generate_uid()}",
        f"/studies/{generate_uid()}/metadata",
        f"/studies/{generate_uid()}/series/{generate_uid()}/instances/{generate_uid()}/frames/1",
        f"/studies/{generate_uid()}/series/{generate_uid()}/instances/{generate_uid()}/rendered",
    ],
)
def test_unknown_uids_get_404_with_a_reason(web_server: RunningServer, path: str) -> None:
    response = web_server.get(f"{web_server.http_url}/dicomweb{path}")

    assert_refused(response, 404)


def test_frame_numbers_outside_the_object_get_404_and_malformed_lists_400(
    web_server: RunningServer,
) -> None:
    stow(web_server, part(CT_SMALL.read_bytes()) + CLOSE)
    listing = web_server.get(f"{web_server.http_url}/dicomweb/studies/{CT_SMALL_STUDY}/instances")
    instance_url = listing.json()[0]["00081190"]["Value"][0]

    beyond = web_server.get(f"{instance_url}/frames/2")
    malformed = web_server.get(f"{instance_url}/frames/1,x")
    zero = web_server.get(f"{instance_url}/frames/0")

    assert_refused(beyond, 404)
    assert_refused(malformed, 400)
    assert_refused(zero, 400)
