"""DICOM value strings (DA, TM, PN, AS) to and from Python values; shared by every layer."""

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


def as_from_dates(birth_date: date, on: date) -> str:
    """The Patient's Age (AS) of a child born on `birth_date`, on the date `on`: days under four
    weeks, weeks under three months, months under two years, then years; empty if `on` is
    before the birth.

    Months are calendar months, completed when `on` reaches the day of the month of the birth.

    >>> as_from_dates(date(2024, 1, 1), date(2024, 1, 6))
    '005D'
    >>> as_from_dates(date(2024, 1, 1), date(2024, 3, 1))
    '008W'
    >>> as_from_dates(date(2024, 1, 1), date(2025, 12, 31))
    '023M'
    >>> as_from_dates(date(2020, 2, 29), date(2024, 2, 28))
    '003Y'
    """
    days = (on - birth_date).days
    if days < 0:
        return ""
    months = (on.year - birth_date.year) * 12 + on.month - birth_date.month
    if on.day < birth_date.day:
        months -= 1  # the current month is not yet completed
    if days < 28:
        return f"{days:03d}D"
    if months < 3:
        return f"{days // 7:03d}W"
    if months < 24:
        return f"{months:03d}M"
    return f"{months // 12:03d}Y"


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
