"""FHIR search parameters -> the search criteria of `model/clinical.py`.

- A parameter repeated must match every time (AND); values separated by commas, any of them
  (OR); `\\,`, `\\|`, `\\$` and `\\\\` escape those characters. An empty value is ignored.
- Parameters the door does not know are ignored and reported (FHIR's lenient handling), or
  refused with `Prefer: handling=strict`; a modifier (`name:exact`) is refused.
- A value that cannot be a value of its parameter (a bad date, an unknown status code, a
  reference to another resource type, a control character) is refused: the search would not
  mean what was asked.
- Dates have day precision: `birthdate=2019` is the year 2019, `ge2019-05` from May 2019 on; a
  time given is ignored.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Generic, TypeVar

from pedipacs.errors import InvalidInput
from pedipacs.fhir.errors import UnsupportedSearchError
from pedipacs.fhir.terminology import (
    DICOM_UID_SYSTEM,
    GENDERS,
    OID_PREFIX,
    REPORT_STATUS,
    REPORT_STATUSES,
    REQUEST_STATUS,
    REQUEST_STATUSES,
    issuer_from_system,
    statuses_named,
)
from pedipacs.model.clinical import (
    DEFAULT_COUNT,
    MAX_COUNT,
    DateRange,
    IdentifierKind,
    IdentifierMatch,
    OrderCriteria,
    PatientCriteria,
    ReportCriteria,
    StudyCriteria,
)

C = TypeVar("C", PatientCriteria, OrderCriteria, StudyCriteria, ReportCriteria)
MAX_OFFSET = 10_000_000
PAGING = ("_count", "_offset")
# Result parameters the routes handle themselves (`_format`) or that change nothing here.
HANDLED = ("_format", "_pretty")


@dataclass(frozen=True, slots=True)
class SearchParameter:
    name: str
    type: str  # FHIR search parameter type: token, reference, string, date
    field: str  # of the criteria
    values: Callable[[str], tuple[Any, ...]]  # one value (between commas) -> alternatives
    documentation: str


@dataclass(frozen=True, slots=True)
class SearchDefinition(Generic[C]):
    resource_type: str
    criteria_type: type[C]
    parameters: tuple[SearchParameter, ...]

    def parameter(self, name: str) -> SearchParameter | None:
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True, slots=True)
class ParsedSearch(Generic[C]):
    criteria: C
    used: tuple[tuple[str, str], ...]  # the parameters applied, for the Bundle's links
    ignored: tuple[str, ...]  # names not known, reported back


def parse_search(
    definition: SearchDefinition[C], items: Sequence[tuple[str, str]], *, is_strict: bool = False
) -> ParsedSearch[C]:
    groups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    used: list[tuple[str, str]] = []
    ignored: list[str] = []
    paging = {"_count": str(DEFAULT_COUNT), "_offset": "0"}
    for name, value in items:
        if name in PAGING:
            paging[name] = value
            continue
        if name in HANDLED:
            continue
        parameter = _known(definition, name, is_strict=is_strict)
        if parameter is None:
            ignored.append(name)
        elif value.strip():
            _check_characters(name, value)
            groups[parameter.field].append(_group(parameter, value))
            used.append((name, value))
    count, offset = _paging(paging)
    fields = {field: tuple(found) for field, found in groups.items()}
    criteria = definition.criteria_type(**fields, offset=offset, count=count)
    return ParsedSearch(criteria, tuple(used), tuple(dict.fromkeys(ignored)))


def _known(
    definition: SearchDefinition[C], name: str, *, is_strict: bool
) -> SearchParameter | None:
    base, _, modifier = name.partition(":")
    parameter = definition.parameter(base)
    if parameter is not None and modifier:
        raise UnsupportedSearchError(f"{name}: the modifier :{modifier} is not supported")
    if parameter is None and is_strict:
        raise UnsupportedSearchError(
            f"{name}: not a search parameter of {definition.resource_type} here"
        )
    return parameter


def _check_characters(name: str, value: str) -> None:
    """No identifier, name or date holds a control character (nor could the database keep
    one in the audit trail)."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InvalidInput(f"{name}: control characters are not allowed in a search value")


def _group(parameter: SearchParameter, value: str) -> tuple[Any, ...]:
    try:
        return tuple(
            alternative
            for part in split_escaped(value, ",")
            for alternative in parameter.values(part.strip())
        )
    except InvalidInput as error:
        raise type(error)(f"{parameter.name}: {error}") from error


def _paging(values: dict[str, str]) -> tuple[int, int]:
    count, offset = _natural("_count", values["_count"]), _natural("_offset", values["_offset"])
    if offset > MAX_OFFSET:
        raise InvalidInput(f"_offset: at most {MAX_OFFSET}")
    return min(count, MAX_COUNT), offset


def _natural(name: str, value: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise InvalidInput(f"{name}: {value[:20]!r} is not a whole number (0 or more)")
    return int(text)


# -- escapes and tokens ------------------------------------------------------------------------

_ESCAPED = re.compile(r"\\([\\,$|])")


def split_escaped(text: str, separator: str) -> list[str]:
    r"""Split on `separator` where it is not escaped; escapes are kept for the parts.

    >>> split_escaped(r"a\,b,c", ",")
    ['a\\,b', 'c']
    """
    parts: list[str] = []
    current, is_escaped = "", False
    for char in text:
        if is_escaped:
            current, is_escaped = current + "\\" + char, False
        elif char == "\\":
            is_escaped = True
        elif char == separator:
            parts, current = [*parts, current], ""
        else:
            current += char
    return [*parts, current + ("\\" if is_escaped else "")]


def unescape(text: str) -> str:
    r"""
    >>> unescape(r"a\,b\|c\\d")
    'a,b|c\\d'
    """
    return _ESCAPED.sub(r"\1", text)


def token(text: str) -> tuple[str | None, str]:
    """(system, code) of a token: `code` has no system given (None), `|code` has none ('').

    >>> token("urn:dicom:uid|urn:oid:1.2"), token("E1"), token("|E1")
    (('urn:dicom:uid', 'urn:oid:1.2'), (None, 'E1'), ('', 'E1'))
    """
    parts = split_escaped(text, "|")
    if len(parts) == 1:
        return None, unescape(parts[0]).strip()
    return unescape(parts[0]).strip(), unescape("|".join(parts[1:])).strip()


# -- values ------------------------------------------------------------------------------------


def _text(value: str) -> tuple[str, ...]:
    text = unescape(value).strip()
    return (text,) if text else ()


def _reference(resource_type: str) -> Callable[[str], tuple[str, ...]]:
    """`Patient/12`, `12` or `http://host/fhir/r4/Patient/12` -> `12`."""

    def values(value: str) -> tuple[str, ...]:
        text = unescape(value).strip().rstrip("/")
        if "/" not in text:
            return (text,) if text else ()
        kind, _, key = text.rpartition("/")
        if kind.rpartition("/")[2] != resource_type or not key:
            raise InvalidInput(f"{value[:80]!r} is not a reference to a {resource_type}")
        return (key,)

    return values


def _patient_identifier(value: str) -> tuple[IdentifierMatch, ...]:
    system, code = token(value)
    issuer = None if system is None else issuer_from_system(system)
    return (IdentifierMatch(IdentifierKind.PATIENT_ID, code or None, issuer),)


def _exam_identifier(*kinds: IdentifierKind) -> Callable[[str], tuple[IdentifierMatch, ...]]:
    """Accession, placer and filler order numbers have no system: `code` or `|code`."""

    def values(value: str) -> tuple[IdentifierMatch, ...]:
        system, code = token(value)
        if system:
            return ()  # a system pedipacs does not issue these under: nothing matches
        return tuple(IdentifierMatch(kind, code or None) for kind in kinds)

    return values


def _study_identifier(value: str) -> tuple[IdentifierMatch, ...]:
    """`urn:dicom:uid|urn:oid:<uid>`, or the accession number (`code`, `|code`)."""
    system, code = token(value)
    uid = code.removeprefix(OID_PREFIX) or None
    if system == DICOM_UID_SYSTEM:
        return (IdentifierMatch(IdentifierKind.STUDY_INSTANCE_UID, uid),)
    if system:
        return ()
    accession = IdentifierMatch(IdentifierKind.ACCESSION_NUMBER, code or None)
    if system == "":
        return (accession,)
    return (accession, IdentifierMatch(IdentifierKind.STUDY_INSTANCE_UID, uid))


_DATE = re.compile(
    r"^(?P<prefix>[a-z]{2})?(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_ONE_DAY = timedelta(days=1)


def date_range(value: str) -> tuple[DateRange, ...]:
    """A FHIR date search value as the range of days it matches.

    >>> date_range("2019-02")
    (DateRange(earliest=datetime.date(2019, 2, 1), latest=datetime.date(2019, 2, 28)),)
    >>> date_range("lt2019")
    (DateRange(earliest=None, latest=datetime.date(2018, 12, 31)),)
    """
    match = _DATE.match(unescape(value).strip())
    if match is None:
        raise InvalidInput(
            f"{value[:40]!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD, after a prefix eq, "
            "ge, gt, le, lt, sa or eb)"
        )
    first, last = _period(match["year"], match["month"], match["day"], value)
    ranges = {
        "eq": DateRange(first, last),
        "ge": DateRange(first, None),
        "le": DateRange(None, last),
        "gt": DateRange(last + _ONE_DAY if last < date.max else last, None),
        "lt": DateRange(None, first - _ONE_DAY if first > date.min else first),
    }
    prefix = {"sa": "gt", "eb": "lt"}.get(match["prefix"] or "eq", match["prefix"] or "eq")
    if prefix not in ranges:
        raise UnsupportedSearchError(f"the date prefix {prefix!r} is not supported")
    return (ranges[prefix],)


def _period(year: str, month: str | None, day: str | None, value: str) -> tuple[date, date]:
    try:
        if month is None:
            return date(int(year), 1, 1), date(int(year), 12, 31)
        if day is None:
            last = calendar.monthrange(int(year), int(month))[1]
            return date(int(year), int(month), 1), date(int(year), int(month), last)
        single = date(int(year), int(month), int(day))
    except (ValueError, calendar.IllegalMonthError) as error:
        raise InvalidInput(f"{value[:40]!r} is not a calendar date") from error
    return single, single


def _gender(value: str) -> tuple[str | None, ...]:
    code = token(value)[1].lower()
    if code not in GENDERS:
        raise InvalidInput(f"{value[:20]!r} is not one of {', '.join(GENDERS)}")
    return ({"male": "M", "female": "F", "other": "O"}.get(code),)


def _order_status(value: str) -> tuple[Any, ...]:
    code = token(value)[1]
    if code not in REQUEST_STATUSES:
        raise InvalidInput(f"{value[:30]!r} is not one of {', '.join(REQUEST_STATUSES)}")
    return statuses_named(code, REQUEST_STATUS)


def _report_status(value: str) -> tuple[Any, ...]:
    code = token(value)[1]
    if code not in REPORT_STATUSES:
        raise InvalidInput(f"{value[:30]!r} is not one of {', '.join(REPORT_STATUSES)}")
    return statuses_named(code, REPORT_STATUS)


# -- what each resource type is searched by ---------------------------------------------------

_ID = "The logical id"
_PATIENT = "The patient: `Patient/<id>` or `<id>`"
_PATIENT_CHAIN = "The patient's identifier, as the Patient search's `identifier`"
_ACCESSION = IdentifierKind.ACCESSION_NUMBER


def _patient_parameters(*names: str) -> tuple[SearchParameter, ...]:
    return (
        *(SearchParameter(n, "reference", "patients", _reference("Patient"), _PATIENT)
          for n in names),
        SearchParameter("patient.identifier", "token", "patient_identifiers",
                        _patient_identifier, _PATIENT_CHAIN),
    )  # fmt: skip


PATIENT_SEARCH = SearchDefinition("Patient", PatientCriteria, (
    SearchParameter("_id", "token", "keys", _text, _ID),
    SearchParameter("identifier", "token", "identifiers", _patient_identifier,
                    "A patient identifier: `value` (any issuer), `|value` (no issuer) or "
                    "`urn:pedipacs:issuer:<issuer>|value`"),
    SearchParameter("name", "string", "names", _text, "The start of any part of the name"),
    SearchParameter("family", "string", "families", _text, "The start of the family name"),
    SearchParameter("given", "string", "givens", _text, "The start of a given name"),
    SearchParameter("birthdate", "date", "birth_dates", date_range, "The date of birth"),
    SearchParameter("gender", "token", "sexes", _gender, "male, female, other or unknown"),
))  # fmt: skip

ORDER_SEARCH = SearchDefinition("ServiceRequest", OrderCriteria, (
    SearchParameter("_id", "token", "keys", _text, _ID),
    *_patient_parameters("patient", "subject"),
    SearchParameter("identifier", "token", "identifiers", _exam_identifier(
        _ACCESSION, IdentifierKind.PLACER_ORDER_NUMBER, IdentifierKind.FILLER_ORDER_NUMBER),
        "The accession number (or the placer or filler order number)"),
    SearchParameter("status", "token", "statuses", _order_status,
                    "active (until reported), completed (reported) or revoked"),
))  # fmt: skip

STUDY_SEARCH = SearchDefinition("ImagingStudy", StudyCriteria, (
    SearchParameter("_id", "token", "keys", _text, "The Study Instance UID"),
    *_patient_parameters("patient", "subject"),
    SearchParameter("identifier", "token", "identifiers", _study_identifier,
                    "`urn:dicom:uid|urn:oid:<Study Instance UID>` or the accession number"),
    SearchParameter("basedon", "reference", "orders", _reference("ServiceRequest"),
                    "The order: `ServiceRequest/<id>`"),
    SearchParameter("started", "date", "study_dates", date_range, "The study date"),
))  # fmt: skip

REPORT_SEARCH = SearchDefinition("DiagnosticReport", ReportCriteria, (
    SearchParameter("_id", "token", "keys", _text, _ID),
    *_patient_parameters("patient", "subject"),
    SearchParameter("identifier", "token", "identifiers", _exam_identifier(
        _ACCESSION, IdentifierKind.FILLER_ORDER_NUMBER),
        "The accession number (or the filler order number)"),
    SearchParameter("based-on", "reference", "orders", _reference("ServiceRequest"),
                    "The order: `ServiceRequest/<id>`"),
    SearchParameter("status", "token", "statuses", _report_status,
                    "preliminary, final or amended (drafts are never shown)"),
))  # fmt: skip
