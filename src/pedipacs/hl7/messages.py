"""HL7 v2 messages as pedipacs reads them: bytes -> text -> segments of plain values.

The structure (segments, fields, repetitions, components, subcomponents) is split by the `hl7`
package (python-hl7), with the delimiters the message declares in MSH-1 and MSH-2. Its tree
leaves a part without separators as a plain string; `Segment` turns every field into the same
shape (repetitions of components of subcomponents) and resolves the escape sequences, so the
mappings in `adt.py` and `orm.py` read values without caring how they were written.

Everything wrong with a message is raised as `Hl7ContentError` (AE) or `MessageRejected` (AR),
each naming the HL7 error code (table 0357) and, when known, where the fault is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import hl7

from pedipacs.errors import InvalidInput, PedipacsError

SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# MSH-18 character sets (HL7 table 0211) pedipacs decodes; empty: ASCII, and UTF-8 in practice.
CHARACTER_SETS = {
    "ASCII": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
}
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


class ErrorCode(IntEnum):
    """HL7 table 0357, Message Error Condition Codes (ERR-3)."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The code's description in table 0357, e.g. 'Required field missing'."""
        words = self.name.replace("_", " ").capitalize()
        return words.replace("processing id", "processing ID").replace("version id", "version ID")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a fault is (ERR-2, data type ERL): segment, its occurrence, field, component."""

    segment: str
    sequence: int = 1
    field: int | None = None
    component: int | None = None

    def __str__(self) -> str:
        """The form used in messages: `PID-3`, `OBR-4.1`, `MSH`."""
        text = self.segment
        if self.field is not None:
            text += f"-{self.field}"
            if self.component is not None:
                text += f".{self.component}"
        return text

    def at(self, component: int) -> Location:
        return Location(self.segment, self.sequence, self.field, component)


class Hl7ContentError(InvalidInput):
    """The message content is wrong: the sender must correct it (AE)."""

    def __init__(
        self,
        text: str,
        location: Location | None = None,
        code: ErrorCode = ErrorCode.DATA_TYPE_ERROR,
    ) -> None:
        super().__init__(text)
        self.location = location
        self.code = code


class MessageRejected(PedipacsError):
    """The message is not for this receiver (type, event, version, sender): AR."""

    def __init__(self, text: str, code: ErrorCode, location: Location | None = None) -> None:
        super().__init__(text)
        self.location = location
        self.code = code


class NotHl7Error(MessageRejected):
    """No MSH segment with a usable field separator: nothing of it can be read."""

    def __init__(self, text: str) -> None:
        super().__init__(text, ErrorCode.SEGMENT_SEQUENCE_ERROR, Location("MSH"))


@dataclass(frozen=True, slots=True)
class Delimiters:
    """MSH-1 and MSH-2 as the message declares them."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # MSH-2's fifth character (v2.7 and later), kept for the echo

    @property
    def encoding_characters(self) -> str:
        return f"{self.component}{self.repetition}{self.escape}{self.subcomponent}{self.truncation}"

    @classmethod
    def from_msh(cls, field_separator: str, encoding_characters: str) -> Delimiters | None:
        """The delimiters, or None when they are unusable: missing, repeated, letters, digits,
        spaces or control characters."""
        characters = field_separator + encoding_characters
        if len(field_separator) != 1 or len(encoding_characters) not in (4, 5):
            return None
        if len(set(characters)) != len(characters):
            return None
        if not all(_is_delimiter(c) for c in characters):
            return None
        e = encoding_characters
        return cls(field_separator, e[0], e[1], e[2], e[3], e[4:])


def _is_delimiter(character: str) -> bool:
    return (
        character.isascii()
        and character.isprintable()
        and not character.isalnum()
        and character != " "
    )


DEFAULT_DELIMITERS = Delimiters()


def unescape(text: str, delimiters: Delimiters, codec: str = "latin-1") -> str:
    r"""Resolve HL7 escape sequences (chapter 2.7): delimiters (\F\ \S\ \T\ \R\ \E\), hex
    data (\X..\) and line breaks (\.br\); highlighting, character-set switches and other
    formatting commands are dropped.

    >>> unescape("O\\S\\BRIEN \\E\\ \\T\\ co\\X41\\", Delimiters())
    'O^BRIEN \\ & coA'
    """
    if delimiters.escape not in text:
        return text
    parts: list[str] = []
    position = 0
    while position < len(text):
        start = text.find(delimiters.escape, position)
        if start < 0:
            parts.append(text[position:])
            break
        end = text.find(delimiters.escape, start + 1)
        if end < 0:  # an escape never closed: kept as written
            parts.append(text[position:])
            break
        parts.append(text[position:start])
        parts.append(_escape_sequence(text[start + 1 : end], delimiters, codec))
        position = end + 1
    return "".join(parts)


def _escape_sequence(sequence: str, delimiters: Delimiters, codec: str) -> str:
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": delimiters.escape,
        ".br": "\n",
    }
    if sequence in simple:
        return simple[sequence]
    if sequence[:1] == "X" and _HEX.match(sequence[1:]):
        return bytes.fromhex(sequence[1:]).decode(codec, errors="replace")
    return ""


def escape(text: str, delimiters: Delimiters) -> str:
    r"""Write `text` as one HL7 value: delimiters escaped, line breaks made spaces.

    >>> escape("A|B^C", Delimiters())
    'A\\F\\B\\S\\C'
    """
    replacements = {
        delimiters.escape: f"{delimiters.escape}E{delimiters.escape}",
        delimiters.field: f"{delimiters.escape}F{delimiters.escape}",
        delimiters.component: f"{delimiters.escape}S{delimiters.escape}",
        delimiters.repetition: f"{delimiters.escape}R{delimiters.escape}",
        delimiters.subcomponent: f"{delimiters.escape}T{delimiters.escape}",
        "\r": " ",
        "\n": " ",
    }
    return "".join(replacements.get(c, c) for c in text)


# A field: its repetitions, each a tuple of components, each a tuple of subcomponents.
Repetition = tuple[tuple[str, ...], ...]
FieldValue = tuple[Repetition, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment with plain (unescaped) values. `fields[0]` is field 1 (for MSH: MSH-1, the
    field separator, and MSH-2 the encoding characters, both as written)."""

    name: str
    sequence: int  # 1 for the first segment of this name in the message, 2 for the next, ...
    fields: tuple[FieldValue, ...]

    def repetitions(self, field: int) -> FieldValue:
        """The non-empty repetitions of a field."""
        if field < 1 or field > len(self.fields):
            return ()
        return tuple(r for r in self.fields[field - 1] if any(any(c) for c in r))

    def value(self, field: int, component: int = 1, subcomponent: int = 1) -> str:
        """A value of the first repetition, stripped; '' when absent or the HL7 null `""`."""
        repetitions = self.repetitions(field)
        return part(repetitions[0], component, subcomponent) if repetitions else ""

    def location(self, field: int, component: int | None = None) -> Location:
        return Location(self.name, self.sequence, field, component)


def part(repetition: Repetition, component: int, subcomponent: int = 1) -> str:
    """A component (subcomponent) of one repetition, stripped; the HL7 null `""` reads as ''."""
    if component > len(repetition) or subcomponent > len(repetition[component - 1]):
        return ""
    value = repetition[component - 1][subcomponent - 1].strip()
    return "" if value == '""' else value


@dataclass(frozen=True, slots=True)
class Header:
    """MSH as received, readable even when the rest of the message is not: what the
    acknowledgement echoes and the sender check reads. `raw` holds MSH-n at index n, as
    written (escaped); index 0 is unused."""

    raw: tuple[str, ...] = ()
    delimiters: Delimiters | None = None  # None: MSH-1/MSH-2 unusable

    @property
    def is_readable(self) -> bool:
        return len(self.raw) > 2

    def field(self, number: int) -> str:
        return self.raw[number] if number < len(self.raw) else ""

    def value(self, number: int, component: int = 1) -> str:
        """MSH-n (one component, first repetition), unescaped and stripped."""
        raw = self.field(number)
        delimiters = self.delimiters
        if delimiters is None:
            return raw.strip() if component == 1 else ""
        first = raw.split(delimiters.repetition, 1)[0]
        components = first.split(delimiters.component)
        if component > len(components):
            return ""
        value = components[component - 1].split(delimiters.subcomponent, 1)[0]
        return unescape(value, delimiters).strip()

    @property
    def sending_application(self) -> str:
        return self.value(3)

    @property
    def sending_facility(self) -> str:
        return self.value(4)

    @property
    def control_id(self) -> str:
        return self.value(10)

    @property
    def message_code(self) -> str:
        return self.value(9, 1).upper()

    @property
    def trigger_event(self) -> str:
        return self.value(9, 2).upper()

    @property
    def message_type(self) -> str:
        """`ADT^A04`: what the inbox records."""
        trigger = self.trigger_event
        return f"{self.message_code}^{trigger}" if trigger else self.message_code

    @property
    def version(self) -> str:
        return self.value(12)


def normalized_text(payload: str) -> str:
    """Segments separated by CR; LF and CRLF accepted too; blank lines and the whitespace
    around the message dropped."""
    lines = payload.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return "\r".join(line for line in lines if line.strip())


def read_header(text: str) -> Header:
    """Peek at MSH without trusting the rest of the message."""
    first = text.lstrip().split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 5:
        return Header()
    separator = first[3]
    if not (separator.isascii() and separator.isprintable()) or separator.isalnum():
        return Header()
    fields = first.split(separator)
    # fields[0] is "MSH", fields[1] MSH-2: MSH-n is fields[n - 1] for n >= 2.
    raw = ("", separator, *fields[1:])
    return Header(raw, Delimiters.from_msh(separator, fields[1]))


def decode(payload: bytes) -> tuple[str, str]:
    """The message as text, and the codec read from MSH-18 that decoded it (also used for
    the acknowledgement). Without MSH-18, UTF-8 (ASCII included), else ISO 8859-1."""
    peeked = read_header(normalized_text(payload.decode("latin-1")))
    charset = peeked.value(18).upper()
    if not charset:
        try:
            return payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return payload.decode("latin-1"), "latin-1"
    codec = CHARACTER_SETS.get(charset)
    if codec is None:
        raise Hl7ContentError(
            f"MSH-18: character set {charset!r} is not supported",
            Location("MSH", 1, 18),
            ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    try:
        return payload.decode(codec), codec
    except UnicodeDecodeError as error:
        raise Hl7ContentError(
            f"MSH-18: the message is not valid {charset} (byte {error.start})",
            Location("MSH", 1, 18),
            ErrorCode.DATA_TYPE_ERROR,
        ) from error


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed message: its header and its segments in order."""

    header: Header
    segments: tuple[Segment, ...]
    codec: str = "utf-8"
    _by_name: dict[str, list[Segment]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for segment in self.segments:
            self._by_name.setdefault(segment.name, []).append(segment)

    def first(self, name: str) -> Segment | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Segment]:
        return list(self._by_name.get(name, ()))

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)


def parse(text: str, codec: str = "utf-8") -> Message:
    """Split a decoded message into segments (python-hl7), checking what every message must
    have: an MSH first with usable delimiters, segment names of three capitals or digits, one
    MSH only."""
    text = normalized_text(text)
    header = read_header(text)
    if not header.is_readable:
        raise NotHl7Error("not an HL7 v2 message: it does not start with an MSH segment")
    delimiters = header.delimiters
    if delimiters is None:
        raise Hl7ContentError(
            f"MSH-2: encoding characters {header.field(2)!r} are not usable (four distinct "
            "characters, no letters, digits or spaces, other than the field separator)",
            Location("MSH", 1, 2),
            ErrorCode.DATA_TYPE_ERROR,
        )
    try:
        tree = hl7.parse(text)
    except Exception as error:  # python-hl7 raises what it meets; the sender gets an AE
        raise Hl7ContentError(
            f"the message cannot be split into segments: {error}", Location("MSH")
        ) from error
    segments: list[Segment] = []
    counts: dict[str, int] = {}
    for position, node in enumerate(tree):
        name = str(node[0])
        if not SEGMENT_NAME.match(name):
            raise Hl7ContentError(
                f"segment {position + 1}: {name[:8]!r} is not a segment name",
                Location(name[:3] or "?", 1),
                ErrorCode.SEGMENT_SEQUENCE_ERROR,
            )
        if name == "MSH" and position > 0:
            raise Hl7ContentError(
                "one message per frame: a second MSH segment",
                Location("MSH", 2),
                ErrorCode.SEGMENT_SEQUENCE_ERROR,
            )
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(name, counts[name], _fields(node, name, delimiters, codec)))
    return Message(header, tuple(segments), codec)


def _fields(node: Any, name: str, delimiters: Delimiters, codec: str) -> tuple[FieldValue, ...]:
    items = list(node)[1:]
    if name == "MSH":
        # MSH-1 and MSH-2 are the delimiters themselves, kept as written.
        written = tuple((((str(item),),),) for item in items[:2])
        return written + tuple(_field(item, delimiters, codec) for item in items[2:])
    return tuple(_field(item, delimiters, codec) for item in items)


def _field(node: Any, delimiters: Delimiters, codec: str) -> FieldValue:
    """python-hl7 gives a field as a list of plain strings (no separator in it) or of
    repetitions, and a repetition as a list of strings or of components."""
    if isinstance(node, str):
        return (((unescape(node, delimiters, codec),),),)
    repetitions: list[Repetition] = []
    for repetition in node:
        if isinstance(repetition, str):
            repetitions.append(((unescape(repetition, delimiters, codec),),))
            continue
        components: list[tuple[str, ...]] = []
        for component in repetition:
            if isinstance(component, str):
                components.append((unescape(component, delimiters, codec),))
            else:
                components.append(tuple(unescape(str(s), delimiters, codec) for s in component))
        repetitions.append(tuple(components))
    return tuple(repetitions)


def only_segment(message: Message, name: str, *, required: bool = True) -> Segment | None:
    """The one segment of that name: AE 100 when it is missing (if required) or repeated."""
    found = message.all(name)
    if len(found) > 1:
        raise Hl7ContentError(
            f"{name}: one {name} segment expected, {len(found)} received",
            Location(name, 2),
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    if not found and required:
        raise Hl7ContentError(
            f"{name}: the {name} segment is missing",
            Location(name, 1),
            ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    return found[0] if found else None
