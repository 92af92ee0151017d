"""HL7 data types read into plain values, refused (AE 102, naming the field) when they cannot
be kept: text that fits its DICOM VR, DTM timestamps, person names in DICOM PN order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from pedipacs.hl7.messages import Hl7ContentError, Location

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


def checked_text(
    value: str, location: Location, what: str, max_length: int, *, multiline: bool = False
) -> str | None:
    """`value`, or None when empty; refused (AE 102) when longer than `max_length` or holding
    control characters (line breaks allowed for free text)."""
    if not value:
        return None
    allowed = "\n\t" if multiline else ""
    if any((ord(c) < 32 and c not in allowed) or c == "\x7f" for c in value):
        raise Hl7ContentError(f"{location}: the {what} holds control characters", location)
    if len(value) > max_length:
        raise Hl7ContentError(
            f"{location}: the {what} is longer than {max_length} characters", location
        )
    return value


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A DTM value: a date, a time when given, and the UTC offset when given."""

    date: date
    time: time | None
    offset: timezone | None

    def as_datetime(self) -> datetime:
        """Local date and time as written (midnight when only a date was given), with the
        offset when one was written."""
        return datetime.combine(self.date, self.time or time(0)).replace(tzinfo=self.offset)


def timestamp_from_dtm(value: str, location: Location, what: str) -> Timestamp | None:
    """Read `YYYYMMDD[HH[MM[SS[.S...]]]][+/-ZZZZ]`; a year or a month alone is refused, since
    a date is needed (AE 102)."""
    if not value:
        return None
    match = _DTM.match(value)
    if match is None or match.group(3) is None:
        raise Hl7ContentError(
            f"{location}: the {what} {value[:40]!r} is not a date (YYYYMMDD[HHMM[SS]])", location
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        day_value = date(int(year), int(month), int(day))
        time_value = None
        if hour is not None:
            microsecond = int((fraction or "0").ljust(6, "0")) if second else 0
            time_value = time(int(hour), int(minute or 0), int(second or 0), microsecond)
        zone = None
        if offset:
            hours, minutes = int(offset[1:3]), int(offset[3:5])
            delta = timedelta(hours=hours, minutes=minutes)
            zone = timezone(-delta if offset[0] == "-" else delta)
    except ValueError as error:
        raise Hl7ContentError(
            f"{location}: the {what} {value!r} is not a valid date and time", location
        ) from error
    return Timestamp(day_value, time_value, zone)


def person_name(
    family: str, given: str, middle: str, prefix: str, suffix: str, location: Location, what: str
) -> str | None:
    """The DICOM PN form `FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`, trailing empty parts dropped;
    refused (AE 102) when a part holds a PN delimiter or the name exceeds 64 characters."""
    parts = [family, given, middle, prefix, suffix]
    for value in parts:
        if any(c in value for c in "^=\\"):
            raise Hl7ContentError(f"{location}: the {what} holds '^', '=' or '\\'", location)
    name = "^".join(parts).rstrip("^")
    return checked_text(name, location, what, 64)
