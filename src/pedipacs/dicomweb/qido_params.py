"""QIDO-RS query parameters -> `model.Query` (PS3.18 8.3.4), sharing every matching rule with
C-FIND through `model.query.match_from_text`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from pedipacs.errors import InvalidQueryError
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.query import (
    KeyMatch,
    Match,
    Query,
    SequenceMatch,
    UidList,
    Universal,
    ValueList,
    match_from_text,
)

ST, SE, IM = QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE

# The attributes every answer carries (PS3.18 Tables 6.7.1-2, -2a and -2b).
DEFAULT_RETURN_KEYS: dict[QueryLevel, tuple[str, ...]] = {
    ST: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    SE: (
        "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
        "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime", "BodyPartExamined",
    ),
    IM: (
        "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames",
        "AvailableTransferSyntaxUID",
    ),
}  # fmt: skip

_CONTROL_PARAMETERS = {"limit", "offset", "includefield", "fuzzymatching", "_", "charset"}
_UID_SEPARATORS = ("\\", ",")


@dataclass(frozen=True, slots=True)
class QidoRequest:
    query: Query
    # Levels whose default attributes the answer includes: a search over all studies' series
    # also returns the study attributes (PS3.18 8.3.4.2).
    levels_shown: tuple[QueryLevel, ...]


def query_from_qido_params(
    params: Sequence[tuple[str, str]], level: QueryLevel, path_uids: Mapping[str, str]
) -> QidoRequest:
    """Parse the query string of a QIDO-RS search at `level`; `path_uids` are the UIDs of the
    URL (`/studies/{StudyInstanceUID}/series`), which match like any other key."""
    key_matches = [KeyMatch(k, match_from_text(k, "UI", v)) for k, v in path_uids.items()]
    include: list[str] = []
    include_all = False
    limit: int | None = None
    offset = 0
    is_fuzzy = False
    for name, value in params:
        if name == "includefield":
            for field_name in (v.strip() for v in value.split(",") if v.strip()):
                if field_name == "all":
                    include_all = True
                else:
                    include.append(_keyword(field_name))
        elif name == "limit":
            limit = _count(name, value, minimum=1)
        elif name == "offset":
            offset = _count(name, value, minimum=0)
        elif name == "fuzzymatching":
            is_fuzzy = _boolean(name, value)
        elif name in _CONTROL_PARAMETERS:
            continue
        else:
            key_matches.append(_key_match(name, value))
    levels_shown = _levels_shown(level, path_uids)
    return_keys = [k for lvl in levels_shown for k in DEFAULT_RETURN_KEYS[lvl]]
    query = Query(
        information_model=InformationModel.STUDY_ROOT,
        level=level,
        key_matches=_merged(key_matches),
        return_keys=tuple(dict.fromkeys([*return_keys, *include])),
        limit=limit,
        offset=offset,
        is_fuzzy=is_fuzzy,
        includes_all=include_all,
    )
    return QidoRequest(query, levels_shown)


def _levels_shown(level: QueryLevel, path_uids: Mapping[str, str]) -> tuple[QueryLevel, ...]:
    shown = [level]
    if level in (SE, IM) and "StudyInstanceUID" not in path_uids:
        shown.insert(0, ST)
    if level is IM and "SeriesInstanceUID" not in path_uids:
        shown.insert(-1, SE)
    return tuple(shown)


def _keyword(name: str) -> str:
    """A keyword or an 8-hex-digit tag, as QIDO-RS allows both (PS3.18 8.3.4.1)."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        keyword = keyword_for_tag(int(name, 16))
        if keyword:
            return keyword
    elif tag_for_keyword(name) is not None:
        return name
    raise InvalidQueryError(f"{name!r} is not a DICOM attribute keyword or tag")


def _key_match(name: str, value: str) -> KeyMatch:
    if "." in name:
        # Sequence matching (`RequestAttributesSequence.AccessionNumber=...`).
        outer, _, inner = name.partition(".")
        return KeyMatch(_keyword(outer), SequenceMatch((_key_match(inner, value),)))
    keyword = _keyword(name)
    vr = str(dictionary_VR(tag_for_keyword(keyword) or 0))
    if vr == "SQ":
        return KeyMatch(keyword, Universal())
    values = [v.strip() for v in _split(value, vr)]
    values = [v for v in values if v]
    if len(values) > 1:
        return KeyMatch(keyword, UidList(tuple(values)) if vr == "UI" else ValueList(tuple(values)))
    return KeyMatch(keyword, match_from_text(keyword, vr, values[0] if values else ""))


def _split(value: str, vr: str) -> list[str]:
    if vr == "UI":
        for separator in _UID_SEPARATORS:
            value = value.replace(separator, "\\")
    return value.split("\\") if vr in ("UI", "CS") else [value]


def _merged(key_matches: list[KeyMatch]) -> tuple[KeyMatch, ...]:
    """Repeated keys (`StudyInstanceUID=a&StudyInstanceUID=b`) become one list match."""
    by_keyword: dict[str, list[Match]] = {}
    for key_match in key_matches:
        by_keyword.setdefault(key_match.keyword, []).append(key_match.match)
    merged: list[KeyMatch] = []
    for keyword, matches in by_keyword.items():
        if len(matches) == 1:
            merged.append(KeyMatch(keyword, matches[0]))
            continue
        values = [getattr(m, "value", None) for m in matches]
        if any(v is None for v in values):
            raise InvalidQueryError(f"{keyword} is given more than once")
        merged.append(KeyMatch(keyword, UidList(tuple(str(v) for v in values))))
    return tuple(merged)


def _count(name: str, value: str, *, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidQueryError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise InvalidQueryError(f"{name} must be at least {minimum}")
    # The server's maximum page size is applied by the search (`qido.py`), from the settings.
    return number


def _boolean(name: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no", ""):
        return False
    raise InvalidQueryError(f"{name} must be true or false, not {value!r}")
