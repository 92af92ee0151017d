"""A child's age as paediatric documents print it: days, then weeks, months and years."""

from __future__ import annotations

from datetime import date


def completed_months(birth: date, on: date) -> int:
    """Calendar months completed between `birth` and `on`.

    A month is completed when the day of the month reaches the birth day; a month too short to
    hold that day (a child born on 31 January) is completed on the first day of the next one.

    >>> completed_months(date(2024, 1, 15), date(2024, 2, 14))
    0
    >>> completed_months(date(2024, 1, 15), date(2024, 2, 15))
    1
    >>> completed_months(date(2023, 1, 31), date(2023, 2, 28)), completed_months(
    ...     date(2023, 1, 31), date(2023, 3, 1))
    (0, 1)
    >>> completed_months(date(2020, 2, 29), date(2021, 2, 28)), completed_months(
    ...     date(2020, 2, 29), date(2021, 3, 1))
    (11, 12)
    """
    months = (on.year - birth.year) * 12 + on.month - birth.month
    # On a day before the birth day the current month is not completed yet; in a month without
    # the birth day this holds until its last day, so it completes on the 1st of the next one.
    return months - 1 if on.day < birth.day else months


def paediatric_age(birth: date, on: date) -> str:
    """The age of a child born on `birth`, on the date `on`: days under one month, weeks under
    three months, months under two years, then years. Raises ValueError if `on` is before the
    birth.

    >>> born = date(2024, 1, 1)
    >>> paediatric_age(born, born)
    '0 days'
    >>> paediatric_age(born, date(2024, 1, 2))
    '1 day'
    >>> paediatric_age(born, date(2024, 1, 30))
    '29 days'
    >>> paediatric_age(born, date(2024, 2, 1))
    '4 weeks'
    >>> paediatric_age(born, date(2024, 3, 31))
    '12 weeks'
    >>> paediatric_age(born, date(2024, 4, 1))
    '3 months'
    >>> paediatric_age(born, date(2025, 12, 31))
    '23 months'
    >>> paediatric_age(born, date(2026, 1, 1))
    '2 years'
    >>> paediatric_age(date(2009, 6, 30), date(2025, 6, 29))
    '15 years'
    >>> paediatric_age(born, date(2023, 12, 31))
    Traceback (most recent call last):
    ...
    ValueError: 2023-12-31 is before the birth date 2024-01-01
    """
    days = (on - birth).days
    if days < 0:
        raise ValueError(f"{on.isoformat()} is before the birth date {birth.isoformat()}")
    months = completed_months(birth, on)
    if months < 1:
        return _plural(days, "day")
    if months < 3:
        return _plural(days // 7, "week")
    if months < 24:
        return _plural(months, "month")
    return _plural(months // 12, "year")


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
