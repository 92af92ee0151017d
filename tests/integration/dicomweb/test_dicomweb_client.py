"""DICOMweb end to end with an independent client (`dicomweb-client`) and raw HTTP (httpx):
store with STOW-RS, find with QIDO-RS, read back with WADO-RS and WADO-URI."""

from __future__ import annotations

import email.parser
import email.policy
import gzip
from io import BytesIO

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import generate_uid

from support.files import PYDICOM_TEST_FILES, DicomFile, pydicom_test_files
from support.server import RunningServer

ANY_SYNTAX = (("application/dicom", "*"),)
UNCOMPRESSED_FRAMES = (("application/octet-stream", "1.2.840.10008.1.2.1"),)
# Lossless syntaxes, so decoded frames must equal pydicom's decode bit for bit.
FRAME_FILES = (
    "CT_small.dcm",  # native, 16 bit
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle_2frame.dcm",  # two colour frames
    "rtdose.dcm",  # native multi-frame
)


def fresh_copy(name: str) -> Dataset:
    """A pydicom test file under new UIDs, so every test stores instances of its own."""
    dataset = dcmread(PYDICOM_TEST_FILES / name)
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return dataset


def unique_files() -> list[DicomFile]:
    """pydicom's files with a valid identity, one per SOP Instance UID."""
    seen: dict[str, DicomFile] = {}
    for file in pydicom_test_files():
        if file.has_valid_identity:
            seen.setdefault(file.sop_instance_uid, file)
    return list(seen.values())


def _meta_disagrees(file: DicomFile) -> bool:
    meta = dcmread(file.path, stop_before_pixels=True).file_meta
    return (
        str(meta.get("MediaStorageSOPInstanceUID", file.sop_instance_uid)) != file.sop_instance_uid
    )


def multipart_body(parts: list[bytes], boundary: str = "test-boundary-1234") -> tuple[bytes, str]:
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
        for part in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def multipart_parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """Each part's Content-Type and body, parsed by the standard library's MIME parser."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    return [
        (part.get_content_type(), part.get_payload(decode=True)) for part in message.iter_parts()
    ]


def test_stow_of_every_pydicom_file_then_wado_returns_the_bytes_sent(
    web_server: RunningServer,
) -> None:
    files = unique_files()
    body, content_type = multipart_body([f.path.read_bytes() for f in files])

    stored = web_server.post(
        f"{web_server.http_url}/dicomweb/studies",
        content=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        timeout=120,
    )

    # Files whose File Meta names another SOP Instance than their data set are refused, as by
    # C-STORE; the rest are stored.
    refused = {f.sop_instance_uid for f in files if _meta_disagrees(f)}
    assert stored.status_code == (202 if refused else 200), stored.text[:2000]
    failed = stored.json().get("00081198", {"Value": []})["Value"]
    assert {item["00081155"]["Value"][0] for item in failed} == refused
    assert all(item["00081197"]["Value"] == [0xC000] for item in failed)
    referenced = stored.json()["00081199"]["Value"]
    assert len(referenced) == len(files) - len(refused)
    for file in [f for f in files if f.sop_instance_uid not in refused][:12]:
        url = (
            f"{web_server.http_url}/dicomweb/studies/{file.study_instance_uid}/series/"
            f"{file.series_instance_uid}/instances/{file.sop_instance_uid}"
        )
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        retrieved = web_server.get(url, headers={"Accept": accept}, timeout=60)
        assert retrieved.status_code == 200, retrieved.text
        [(media_type, data)] = multipart_parts(retrieved)
        assert media_type == "application/dicom"
        assert data == file.path.read_bytes(), file.path.name


def test_dicomweb_client_stores_finds_and_retrieves_a_study(client: DICOMwebClient) -> None:
    datasets = [fresh_copy("CT_small.dcm"), fresh_copy("MR_small_jp2klossless.dcm")]
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate"):
        setattr(datasets[1], keyword, datasets[0].get(keyword))
    study = datasets[0].StudyInstanceUID

    response = client.store_instances(datasets)
    found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    series = client.search_for_series(study)
    instances = client.search_for_instances(study, fields=["all"])
    retrieved = client.retrieve_study(study, media_types=ANY_SYNTAX)

    assert "FailedSOPSequence" not in response
    assert len(response.ReferencedSOPSequence) == 2
    assert [s["0020000D"]["Value"] for s in found] == [[study]]
    assert found[0]["00201208"]["Value"] == [2]  # NumberOfStudyRelatedInstances
    assert sorted(found[0]["00080061"]["Value"]) == ["CT", "MR"]
    assert len(series) == 2
    assert {i["00080018"]["Value"][0] for i in instances} == {d.SOPInstanceUID for d in datasets}
    by_uid = {d.SOPInstanceUID: d for d in datasets}
    for instance in retrieved:
        sent = by_uid[instance.SOPInstanceUID]
        assert instance.PixelData == sent.PixelData
        assert instance.PatientName == sent.PatientName


def test_study_metadata_holds_every_instance_with_bulk_data_uris_that_resolve(
    client: DICOMwebClient,
) -> None:
    dataset = fresh_copy("CT_small.dcm")
    client.store_instances([dataset])

    [metadata] = client.retrieve_study_metadata(dataset.StudyInstanceUID)
    pixel_uri = metadata["7FE00010"]["BulkDataURI"]
    bulk = client.retrieve_bulkdata(pixel_uri)

    assert metadata["00080018"]["Value"] == [dataset.SOPInstanceUID]
    assert metadata["00100010"]["Value"] == [{"Alphabetic": str(dataset.PatientName)}]
    assert metadata["00280010"]["Value"] == [dataset.Rows]
    assert pixel_uri.startswith("http://") and pixel_uri.endswith("/bulkdata/7FE00010")
    assert bulk == [dataset.PixelData]


@pytest.mark.parametrize("name", FRAME_FILES)
def test_frames_decoded_by_the_server_equal_pydicom_pixels(
    client: DICOMwebClient, name: str
) -> None:
    dataset = fresh_copy(name)
    client.store_instances([dataset])
    count = int(dataset.get("NumberOfFrames") or 1)
    uids = (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)

    frames = client.retrieve_instance_frames(
        *uids, frame_numbers=list(range(1, count + 1)), media_types=UNCOMPRESSED_FRAMES
    )

    expected = dataset.pixel_array if count > 1 else dataset.pixel_array[np.newaxis]
    for number, frame in enumerate(frames):
        pixels = np.frombuffer(frame, dtype=expected.dtype.newbyteorder("<"))
        assert np.array_equal(pixels, expected[number].ravel()), f"frame {number + 1}"


def test_compressed_frames_as_stored_decode_to_the_same_pixels(
    web_server: RunningServer, client: DICOMwebClient
) -> None:
    dataset = fresh_copy("MR_small_jpeg_ls_lossless.dcm")
    client.store_instances([dataset])
    url = (
        f"{web_server.http_url}/dicomweb/studies/{dataset.StudyInstanceUID}/series/"
        f"{dataset.SeriesInstanceUID}/instances/{dataset.SOPInstanceUID}/frames/1"
    )

    # What OHIF sends, byte for byte.
    accept = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    response = web_server.get(url, headers={"Accept": accept}, timeout=30)

    assert response.status_code == 200, response.text
    [(media_type, frame)] = multipart_parts(response)
    assert media_type == "application/octet-stream"
    assert "transfer-syntax=1.2.840.10008.1.2.4.80" in response.content.decode("latin-1")
    decoded = pixel_array(BytesIO(_single_frame_file(dataset, frame)))
    assert np.array_equal(decoded, dataset.pixel_array)


def _single_frame_file(dataset: Dataset, frame: bytes) -> bytes:
    from pydicom.encaps import encapsulate

    dataset.PixelData = encapsulate([frame])
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("media_type", "pil_format"), [("image/jpeg", "JPEG"), ("image/png", "PNG")]
)
def test_rendered_image_decodes_and_fits_the_requested_viewport(
    client: DICOMwebClient, media_type: str, pil_format: str
) -> None:
    dataset = fresh_copy("CT_small.dcm")  # 128 x 128
    client.store_instances([dataset])
    uids = (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)

    rendered = client.retrieve_instance_rendered(
        *uids, media_types=(media_type,), params={"viewport": "100,60", "window": "40,400"}
    )
    thumbnail = client.retrieve_instance_frames_rendered(
        *uids, frame_numbers=[1], media_types=(media_type,), params={"viewport": "64,64"}
    )

    image = Image.open(BytesIO(rendered))
    assert image.format == pil_format
    assert image.size == (60, 60)  # a square image fitted inside 100 x 60
    assert Image.open(BytesIO(thumbnail)).size == (64, 64)


def test_wado_uri_returns_the_stored_object_and_a_jpeg(
    web_server: RunningServer, client: DICOMwebClient
) -> None:
    dataset = fresh_copy("CT_small.dcm")
    client.store_instances([dataset])
    params = {
        "requestType": "WADO",
        "studyUID": dataset.StudyInstanceUID,
        "seriesUID": dataset.SeriesInstanceUID,
        "objectUID": dataset.SOPInstanceUID,
    }

    as_dicom = web_server.get(
        f"{web_server.http_url}/wado", params={**params, "contentType": "application/dicom"}
    )
    as_jpeg = web_server.get(f"{web_server.http_url}/wado", params={**params, "rows": "64"})

    assert as_dicom.status_code == 200
    assert dcmread(BytesIO(as_dicom.content)).SOPInstanceUID == dataset.SOPInstanceUID
    assert as_jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(BytesIO(as_jpeg.content)).size == (64, 64)


def test_metadata_is_gzipped_and_revalidated_with_its_etag(
    web_server: RunningServer, client: DICOMwebClient
) -> None:
    dataset = fresh_copy("CT_small.dcm")
    client.store_instances([dataset])
    url = f"{web_server.http_url}/dicomweb/studies/{dataset.StudyInstanceUID}/metadata"

    first = web_server.get(url, headers={"Accept-Encoding": "gzip"})
    raw = web_server.get(url, headers={"Accept-Encoding": "identity"})
    again = web_server.get(url, headers={"If-None-Match": first.headers["etag"]})

    assert first.headers["content-encoding"] == "gzip"
    assert first.json() == raw.json()
    assert len(raw.content) > len(gzip.compress(raw.content)) * 2
    assert again.status_code == 304
    assert "private" in first.headers["cache-control"]
