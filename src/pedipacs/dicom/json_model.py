"""The DICOM JSON model (PS3.18 Annex F): instance metadata and query results as JSON.

Instance metadata is encoded once, when the object is indexed, and kept as text. Large binary
values become a BulkDataURI relative to the instance (`INSTANCE_URI_MARK` + `/bulkdata/<path>`);
the DICOMweb door swaps the mark for the instance's absolute URL when it serves the metadata, so
the stored text does not depend on the host name a client used.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterable, Mapping
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

# Values longer than this (base64 would be ~1.4 KiB) are referenced, not inlined.
BULK_DATA_THRESHOLD = 1024
INSTANCE_URI_MARK = "pedipacs:instance"
_BULK_PREFIX = f'"BulkDataURI":"{INSTANCE_URI_MARK}'
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
PIXEL_DATA_TAGS = frozenset({BaseTag(0x7FE00010), BaseTag(0x7FE00008), BaseTag(0x7FE00009)})
_GROUP_LENGTH_ELEMENT = 0x0000

JsonObject = dict[str, Any]


def metadata_json(dataset: Dataset, data: bytes) -> str:
    """The instance's metadata as DICOM JSON text, bulk data as marked relative URIs.

    `dataset` is the header as `dicom.header.read_dataset_header` returns it: every top-level
    element, large values deferred (value None). Deferred text and sequence values are read from
    `data`; deferred binary values (Pixel Data above all) are never read, only referenced.
    """
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        # The values live in a deflate stream: parse it whole rather than by offsets.
        dataset = dcmread(BytesIO(data), stop_before_pixels=False)
    encoded = _json_dataset(dataset, data, "", inherited_charset="")
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)


def with_instance_uri(metadata: str, instance_uri: str) -> str:
    """Stored metadata with its bulk data URIs made absolute for `instance_uri`."""
    if INSTANCE_URI_MARK not in metadata:
        return metadata
    return metadata.replace(_BULK_PREFIX, f'"BulkDataURI":"{instance_uri}')


def _json_dataset(dataset: Dataset, data: bytes, path: str, inherited_charset: str) -> JsonObject:
    # A sequence item uses its parent's character set unless it names its own (PS3.5 6.1.2.5).
    charset = _charset(dataset) or inherited_charset
    result: JsonObject = {}
    for tag in sorted(dataset.keys()):
        if tag.element == _GROUP_LENGTH_ELEMENT:
            continue  # group lengths are not part of the JSON model (PS3.18 F.2.1)
        # The stored element itself: `get_item` would try to read a deferred value from a file.
        raw = dataset._dict[tag]
        key = f"{tag:08X}"
        element_path = f"{path}/{key}" if path else key
        result[key] = _json_element(dataset, raw, data, element_path, charset)
    return result


def _json_element(
    dataset: Dataset, raw: DataElement | RawDataElement, data: bytes, path: str, charset: str
) -> JsonObject:
    if isinstance(raw, RawDataElement):
        vr = raw.VR or _dictionary_vr(raw.tag)
        if vr in ("US or SS", "US or SS or OW"):
            vr = "SS" if _is_signed(dataset) and raw.length <= 8 else "US"
        if raw.value is None and raw.length:
            if vr in _BINARY_VRS or raw.tag in PIXEL_DATA_TAGS:
                return {"vr": _json_vr(vr, raw.tag), "BulkDataURI": _bulk_uri(path)}
            start = raw.value_tell
            raw = raw._replace(value=data[start : start + raw.length])
        fast = _fast_json(raw, vr, charset, path)
        if fast is not None:
            return fast
        try:
            return _pydicom_json(
                convert_raw_data_element(raw, encoding=dataset._character_set, ds=dataset),
                data,
                path,
                charset,
            )
        except Exception:  # a value pydicom cannot decode: kept as its bytes, never dropped
            return _json_binary("UN", raw.value or b"", path)
    return _pydicom_json(raw, data, path, charset)


def _pydicom_json(element: DataElement, data: bytes, path: str, charset: str) -> JsonObject:
    if element.VR == "SQ":
        items = [
            _json_dataset(item, data, f"{path}/{number}", charset)
            for number, item in enumerate(element.value or [], start=1)
        ]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if element.tag in PIXEL_DATA_TAGS and not element.is_empty:
        return {"vr": _json_vr(element.VR, element.tag), "BulkDataURI": _bulk_uri(path)}
    encoded: JsonObject = element.to_json_dict(
        bulk_data_element_handler=lambda _: _bulk_uri(path),
        bulk_data_threshold=BULK_DATA_THRESHOLD,
    )
    encoded["vr"] = _json_vr(str(encoded.get("vr", element.VR)), element.tag)
    return encoded


# The common VRs are encoded straight from their bytes: pydicom's element-by-element conversion
# costs ~20 us per element, which for a CT header would triple the CPU time of an ingest.
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "SH", "LO", "UC"})
_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
_STRUCT_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q",
                   "SV": "q"}  # fmt: skip
# Character sets whose bytes decode with one Python codec, without ISO 2022 escapes.
_SIMPLE_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1",
                  "ISO_IR 192": "utf-8"}  # fmt: skip


def _fast_json(raw: RawDataElement, vr: str, charset: str, path: str) -> JsonObject | None:
    """The element's JSON without pydicom's conversion, or None for the rarer cases."""
    value: bytes = raw.value or b""
    if vr in _BINARY_VRS and vr not in ("UN",) and raw.tag not in PIXEL_DATA_TAGS:
        return _json_binary(vr, value, path)
    if vr in _STRUCT_FORMATS:
        size = struct.calcsize("<" + _STRUCT_FORMATS[vr])
        if len(value) % size:
            return None
        order = "<" if raw.is_little_endian else ">"
        numbers = struct.unpack(f"{order}{len(value) // size}{_STRUCT_FORMATS[vr]}", value)
        return {"vr": vr, "Value": list(numbers)} if numbers else {"vr": vr}
    is_text = vr in _STRING_VRS or vr in _TEXT_VRS or vr in ("PN", "DS", "IS")
    codec = _SIMPLE_CODECS.get(charset) if is_text else None
    if codec is None:
        return None
    text = value.decode(codec if vr not in ("UI",) else "ascii", errors="replace")
    if vr in _TEXT_VRS:
        text = text.rstrip(" \x00")
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    parts = [part.strip(" \x00") for part in text.split("\\")]
    if not any(parts):
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(p) if p else None for p in parts]}
    if vr in ("DS", "IS"):
        return {"vr": vr, "Value": [_number(p) if p else None for p in parts]}
    return {"vr": vr, "Value": [p if p else None for p in parts]}


def _is_signed(dataset: Dataset) -> bool:
    """Pixel Representation 1: ambiguous US/SS values are signed (PS3.5 Annex A)."""
    raw = dataset._dict.get(BaseTag(0x00280103))
    value = getattr(raw, "value", None)
    if isinstance(value, bytes) and len(value) == 2:
        return value in (b"\x01\x00", b"\x00\x01")
    return value == 1


def _json_binary(vr: str, value: bytes, path: str) -> JsonObject:
    if not value:
        return {"vr": vr}
    if len(value) > BULK_DATA_THRESHOLD * 3 // 4:
        return {"vr": vr, "BulkDataURI": _bulk_uri(path)}
    return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}


def _charset(dataset: Dataset) -> str:
    raw = dataset._dict.get(SPECIFIC_CHARACTER_SET)
    if raw is None:
        return ""
    value = raw.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, list | tuple) or "\\" in str(value):
        return "multiple"
    return str(value or "").strip()


def _bulk_uri(path: str) -> str:
    return f"{INSTANCE_URI_MARK}/bulkdata/{path}"


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _json_vr(vr: str, tag: BaseTag) -> str:
    """An ambiguous dictionary VR resolved for JSON ("OB or OW" -> OW, "US or SS" -> US)."""
    if " or " not in vr:
        return vr
    if tag in PIXEL_DATA_TAGS:
        return "OW"
    return vr.split(" or ")[0]


# -- query results ------------------------------------------------------------------------------

_NUMBER_VRS = frozenset({"IS", "DS", "US", "UL", "UV", "SS", "SL", "SV", "FL", "FD"})


def json_from_values(
    values: Mapping[str, str | list[str] | None], extra: Iterable[tuple[str, JsonObject]] = ()
) -> JsonObject:
    """A query match (keyword -> DICOM string value) as a DICOM JSON object, sorted by tag.

    >>> json_from_values({"PatientName": "DOE^JANE=ドウ", "NumberOfStudyRelatedInstances": "3"})
    {'00100010': {'vr': 'PN', 'Value': [{'Alphabetic': 'DOE^JANE', 'Ideographic': 'ドウ'}]}, \
'00201208': {'vr': 'IS', 'Value': [3]}}
    >>> json_from_values({"StudyDescription": None})
    {'00081030': {'vr': 'LO'}}
    """
    encoded: dict[int, tuple[str, JsonObject]] = {}
    for keyword, value in values.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        encoded[tag] = (f"{tag:08X}", _json_value(_dictionary_vr(BaseTag(tag)), value))
    for key, element in extra:
        encoded[int(key, 16)] = (key, element)
    return {key: element for _, (key, element) in sorted(encoded.items())}


def _json_value(vr: str, value: str | list[str] | None) -> JsonObject:
    vr = _json_vr(vr, BaseTag(0))
    texts = value if isinstance(value, list) else ([] if value in (None, "") else [value])
    texts = [text for text in texts if text is not None]
    if vr == "SQ" or not texts:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(text) for text in texts]}
    if vr in _NUMBER_VRS:
        return {"vr": vr, "Value": [_number(text) for text in texts]}
    return {"vr": vr, "Value": list(texts)}


def _person_name(text: str) -> JsonObject:
    groups = text.split("=")
    names = ("Alphabetic", "Ideographic", "Phonetic")
    return {name: group for name, group in zip(names, groups, strict=False) if group}


def _number(text: str) -> int | float | str:
    try:
        number = float(text)
    except ValueError:
        return text  # a malformed stored value is returned as it is rather than dropped
    return int(number) if number.is_integer() else number
