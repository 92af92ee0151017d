"""DICOM value strings (DA, TM, PN) to and from Python values; shared by every layer."""

from __future__ import annotations

from datetime import date, time

from pedipacs.errors import InvalidInput


def date_from_da(value: str | None) -> date | None:
    """Parse a DA value; tolerate the old ACR-NEMA `YYYY.MM.DD` form; None if empty or invalid.

    >>> date_from_da("20240131")
    datetime.date(2024, 1, 31)
    >>> date_from_da("") is None
    True
    """
    text = (value or "").strip().replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def time_from_tm(value: str | None) -> time | None:
    """Parse a TM value (HH, HHMM, HHMMSS or HHMMSS.FFFFFF); None if empty or invalid.

    >>> time_from_tm("101530.25")
    datetime.time(10, 15, 30, 250000)
    """
    text = (value or "").strip().replace(":", "")
    if not text:
        return None
    main, _, fraction = text.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6) or (fraction and not fraction.isdigit()):
        return None
    parts = [int(main[i : i + 2]) for i in range(0, len(main), 2)] + [0, 0]
    micro = int((fraction + "000000")[:6]) if fraction else 0
    try:
        # DICOM allows a leap second 60; clamp it so Python accepts it.
        return time(parts[0], parts[1], min(parts[2], 59), micro)
    except ValueError:
        return None


def da_from_date(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def tm_from_time(value: time | None) -> str:
    if value is None:
        return ""
    text = value.strftime("%H%M%S")
    return f"{text}.{value.microsecond:06d}" if value.microsecond else text


def range_bound_date(value: str, keyword: str) -> date:
    parsed = date_from_da(value)
    if parsed is None:
        raise InvalidInput(f"{keyword}: {value!r} is not a DA value (YYYYMMDD)")
    return parsed


def range_bound_time(value: str, keyword: str, *, is_end: bool) -> time:
    """A TM range bound; as an upper bound a value covers the whole precision it gives.

    >>> range_bound_time("1015", "StudyTime", is_end=True)
    datetime.time(10, 15, 59, 999999)
    >>> range_bound_time("101530.5", "StudyTime", is_end=True)
    datetime.time(10, 15, 30, 599999)
    >>> range_bound_time("1015", "StudyTime", is_end=False)
    datetime.time(10, 15)
    """
    parsed = time_from_tm(value)
    if parsed is None:
        raise InvalidInput(f"{keyword}: {value!r} is not a TM value (HHMMSS.FFFFFF)")
    if not is_end:
        return parsed
    main, _, fraction = value.strip().replace(":", "").partition(".")
    if len(main) == 2:
        return parsed.replace(minute=59, second=59, microsecond=999999)
    if len(main) == 4:
        return parsed.replace(second=59, microsecond=999999)
    # "101530" ends at 10:15:30.999999, "101530.5" at 10:15:30.599999.
    return parsed.replace(microsecond=int((fraction + "999999")[:6]))


def pn_search_form(value: str | None) -> str | None:
    """The form PN matching compares: alphabetic group, upper case, no trailing empty parts.

    >>> pn_search_form("Doe^Jane^^^=ドウ^ジェーン")
    'DOE^JANE'
    """
    if value is None:
        return None
    alphabetic = value.split("=", 1)[0]
    return alphabetic.upper().rstrip("^ ").strip() or None
