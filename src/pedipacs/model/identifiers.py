"""Validated identifiers."""

from __future__ import annotations

import re

from pedipacs.errors import InvalidUidError, MissingAttributeError

# PS3.5 section 9.1: components of digits separated by dots, no leading zero unless the
# component is "0", at most 64 characters in all.
_UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MAX_UID_LENGTH = 64


def is_valid_uid(value: str) -> bool:
    """Tell whether `value` is a UID as PS3.5 section 9.1 defines it.

    >>> is_valid_uid("1.2.840.10008.1.1")
    True
    >>> is_valid_uid("1.02.3")
    False
    """
    return 0 < len(value) <= MAX_UID_LENGTH and _UID_PATTERN.match(value) is not None


def validated_uid(value: str | None, keyword: str) -> str:
    """Return `value` stripped of DICOM padding, or raise InvalidUidError naming the attribute."""
    cleaned = (value or "").strip().rstrip("\x00").strip()
    if not cleaned:
        raise MissingAttributeError(f"{keyword} is missing or empty")
    if not is_valid_uid(cleaned):
        raise InvalidUidError(f"{keyword} {cleaned!r} is not a valid UID (PS3.5 9.1)")
    return cleaned
