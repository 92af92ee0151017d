"""Realistic HL7 v2 messages of a children's hospital, written for the tests: the birth
registration of preterm twin 2 ("BABY GIRL" LEFEVRE, a temporary number, her mother's MRN in
PID-21, PID-24 Y, PID-25 2), a cranial ultrasound ordered for her in the NICU (ORM^O01, IHE
Scheduled Workflow fields, a ZDS Study Instance UID), a portable chest X-ray (OMI^O23 with TQ1
and IPC), and a raw MLLP client.

Segments are written field by field (`{number: value}`), so that a reader sees which field
holds what, and tests change one field with `with_field`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

SENDER = "HIS"
FACILITY = "CHILDRENS"
NEWBORN_ID = "T-77"
MOTHER_MRN = "MRN500"
ACCESSION = "A26-0001"
STUDY_UID = "1.2.826.0.1.3680043.10.1001.1"
OMI_ACCESSION = "A26-0002"
OMI_STUDY_UID = "1.2.826.0.1.3680043.10.1001.2"
PERMANENT_ID = "MRN900123"  # twin 2's permanent medical record number, given days later

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def segment(name: str, fields: Mapping[int, str]) -> str:
    """One segment from its fields by number; MSH-1 and MSH-2 are the delimiters `|^~\\&`."""
    if name == "MSH":
        last = max(fields, default=2)
        return "MSH|^~\\&|" + "|".join(fields.get(n, "") for n in range(3, last + 1))
    last = max(fields, default=0)
    return name + "|" + "|".join(fields.get(n, "") for n in range(1, last + 1))


def message(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


def msh(control_id: str, message_type: str, version: str = "2.5.1", sender: str = SENDER) -> str:
    return segment(
        "MSH",
        {
            3: sender,
            4: FACILITY,
            5: "PEDIPACS",
            6: "RADIOLOGY",
            7: "20261125081500+0100",
            9: message_type,
            10: control_id,
            11: "P",
            12: version,
            15: "AL",
            16: "NE",
            18: "UNICODE UTF-8",
        },
    )


def newborn_pid() -> str:
    return segment(
        "PID",
        {
            1: "1",
            3: f"{NEWBORN_ID}^^^{FACILITY}&1.2.250.1.999.1&ISO^TMP",
            5: "LEFEVRE^BABY GIRL^^^^^L",
            6: "MARTIN^CAMILLE^^^^^M",
            7: "202611240342+0100",
            8: "F",
            11: "12 RUE DES LILAS^^LYON^^69003^FRA^H",
            13: "^PRN^PH^^^^^^^^^+33 4 72 00 00 00",
            21: f"{MOTHER_MRN}^^^{FACILITY}^MR",
            23: "HOPITAL FEMME MERE ENFANT",
            24: "Y",
            25: "2",
        },
    )


def permanent_pid(identifier: str = PERMANENT_ID) -> str:
    """Twin 2 under her permanent number and her given name."""
    return segment(
        "PID",
        {
            1: "1",
            3: f"{identifier}^^^{FACILITY}&1.2.250.1.999.1&ISO^MR",
            5: "LEFEVRE^CLEMENCE^^^^^L",
            7: "202611240342+0100",
            8: "F",
            21: f"{MOTHER_MRN}^^^{FACILITY}^MR",
            24: "Y",
            25: "2",
        },
    )


def merge(control_id: str = "ADT0040", prior: str = NEWBORN_ID) -> bytes:
    """ADT^A40: the temporary identity `prior` merged into the permanent one."""
    return message(
        msh(control_id, "ADT^A40^ADT_A39"),
        segment("EVN", {1: "A40", 2: "20261127101500+0100"}),
        permanent_pid(),
        segment("MRG", {1: f"{prior}^^^{FACILITY}&1.2.250.1.999.1&ISO^TMP"}),
    )


def change_identifier(
    control_id: str = "ADT0047", prior: str = NEWBORN_ID, new: str = PERMANENT_ID
) -> bytes:
    """ADT^A47: the identifier `prior` is replaced by `new` for the same patient."""
    return message(
        msh(control_id, "ADT^A47^ADT_A30"),
        segment("EVN", {1: "A47", 2: "20261127101500+0100"}),
        permanent_pid(new),
        segment("MRG", {1: f"{prior}^^^{FACILITY}&1.2.250.1.999.1&ISO^TMP"}),
    )


def nicu_pv1() -> str:
    return segment(
        "PV1",
        {1: "1", 2: "I", 3: "NICU^INC04^1^CHILDRENS", 4: "N", 10: "NEO", 19: "VN26-0042"},
    )


def adt(control_id: str = "ADT0001", event: str = "A04") -> bytes:
    """The birth registration of twin 2 (A04), or the same PID under another ADT event."""
    return message(
        msh(control_id, f"ADT^{event}^ADT_A01"),
        segment("EVN", {1: event, 2: "20261124034500+0100", 5: "NURSE01^DUBOIS^MARIE"}),
        newborn_pid(),
        nicu_pv1(),
        segment(
            "OBX",
            {1: "1", 2: "NM", 3: "8339-4^Birth weight Measured^LN", 5: "1620", 6: "g", 11: "F"},
        ),
    )


def orm(
    control_id: str = "ORM0001",
    control: str = "NW",
    accession: str = ACCESSION,
    *,
    start: str = "202611251030",
    station: str = "US_NICU_1",
) -> bytes:
    """A STAT cranial ultrasound for twin 2 (ORM^O01, v2.3.1 as IHE RAD-4 has it)."""
    return message(
        msh(control_id, "ORM^O01", version="2.3.1"),
        newborn_pid(),
        nicu_pv1(),
        segment(
            "ORC",
            {
                1: control,
                2: "PL-9001^HIS",
                3: "FL-4411^RIS",
                5: "SC",
                7: f"^^^{start}^^S",
                9: "20261125081200",
                10: "NURSE01^DUBOIS^MARIE",
                12: "D4471^OKAFOR^ADA^^^DR",
                13: "NICU^INC04^1",
                16: "CANC^Cancelled by the ward" if control == "CA" else "",
                17: "NEO^Neonatology",
            },
        ),
        segment(
            "OBR",
            {
                1: "1",
                2: "PL-9001^HIS",
                3: "FL-4411^RIS",
                4: "76506^US HEAD NEONATAL^C4",
                13: "Preterm twin, 31 weeks",
                16: "D4471^OKAFOR^ADA^^^DR",
                18: accession,
                19: "RP1",
                20: "SPS1",
                21: station,
                24: "US",
                27: f"^^^{start}^^S",
                31: "IVH^Screening for intraventricular haemorrhage",
            },
        ),
        segment("OBX", {1: "1", 2: "NM", 3: "29463-7^Body weight^LN", 5: "1.58", 6: "kg", 11: "F"}),
        segment("ZDS", {1: f"{STUDY_UID}^PEDIPACS^Application^DICOM"}),
    )


def omi(control_id: str = "OMI0001", control: str = "NW") -> bytes:
    """A portable chest X-ray for twin 2 (OMI^O23, v2.5.1, TQ1 and IPC)."""
    return message(
        msh(control_id, "OMI^O23^OMI_O23"),
        newborn_pid(),
        nicu_pv1(),
        segment(
            "ORC",
            {
                1: control,
                2: "PL-9002^HIS",
                3: "FL-4412^RIS",
                5: "SC",
                9: "20261125090000",
                12: "D4471^OKAFOR^ADA^^^DR",
            },
        ),
        segment("TQ1", {1: "1", 7: "20261125140000", 9: "A^ASAP^HL70485"}),
        segment(
            "OBR",
            {
                1: "1",
                2: "PL-9002^HIS",
                3: "FL-4412^RIS",
                4: "71045^XR CHEST 1 VIEW^C4",
                31: "^Respiratory distress",
            },
        ),
        segment(
            "IPC",
            {
                1: OMI_ACCESSION,
                2: "RP1",
                3: OMI_STUDY_UID,
                4: "SPS1",
                5: "DX^Digital Radiography^DCM",
                7: "XR_NICU_PORT",
                9: "XR_NICU_1",
            },
        ),
    )


# Changing a message -------------------------------------------------------------------------


def _segments(data: bytes) -> list[str]:
    return data.decode("utf-8").rstrip("\r").split("\r")


def with_field(data: bytes, name: str, number: int, value: str) -> bytes:
    """`data` with field `number` of the first `name` segment set to `value`."""
    segments = _segments(data)
    for index, text in enumerate(segments):
        if text.startswith(name):
            fields = text.split("|")
            position = number - 1 if name == "MSH" else number
            fields.extend([""] * (position + 1 - len(fields)))
            fields[position] = value
            segments[index] = "|".join(fields)
            break
    else:
        raise KeyError(name)
    return message(*segments)


def without_segment(data: bytes, name: str) -> bytes:
    return message(*(s for s in _segments(data) if not s.startswith(name)))


# A raw MLLP client ----------------------------------------------------------------------------


def framed(data: bytes) -> bytes:
    return VT + data + FS + CR


class MllpClient:
    """A plain socket speaking MLLP, independent of pedipacs' own code."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def write(self, raw: bytes) -> None:
        """Bytes as they are: one TCP write."""
        self.connection.sendall(raw)

    def send(self, data: bytes) -> bytes:
        """One message framed, and its acknowledgement."""
        self.write(framed(data))
        return self.read()

    def read(self) -> bytes:
        """The next frame's content; b'' when the server closed the connection first."""
        while FS not in self._buffer:
            chunk = self.connection.recv(65536)
            if not chunk:
                return b""
            self._buffer += chunk
        end = self._buffer.index(FS)
        content = self._buffer[self._buffer.index(VT) + 1 : end]
        self._buffer = self._buffer[end + 1 :].lstrip(CR)
        return content


def exchange(port: int, *messages: bytes) -> list[bytes]:
    """Send each message on one connection and read its acknowledgement."""
    with MllpClient(port) as client:
        return [client.send(data) for data in messages]


def ack_fields(ack: bytes) -> dict[str, list[str]]:
    """The acknowledgement's segments by name, split on `|` (MSH: index n is MSH-(n+1))."""
    return {
        text.split("|", 1)[0]: text.split("|")
        for text in ack.decode("utf-8").rstrip("\r").split("\r")
        if text
    }


def ack_code(ack: bytes) -> str:
    return ack_fields(ack)["MSA"][1]
