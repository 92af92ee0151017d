"""Fuzzing the HL7 door: mutated registrations and orders (flipped bytes, cut or inserted
runs, delimiters swapped, segments dropped or repeated) always get an acknowledgement, AA, AE
or AR, never an exception; and an AE or AR leaves the patients and orders as they were.

The messages go to the receiver in-process (the function the MLLP listener calls for each
frame), not over TCP. The number of inputs tried is printed (`pytest -s`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from pedipacs.config import Settings
from pedipacs.db.tables import (
    ImagingOrder,
    Patient,
    PatientIdentifier,
    RequestedProcedure,
    ScheduledStep,
)
from pedipacs.hl7.receiver import Hl7Receiver
from pedipacs.node import Node
from support import hl7_samples as samples

FUZZ_EXAMPLES = 250
SEEDS = {
    "adt": samples.adt(),
    "orm": samples.orm(),
    "omi": samples.omi(),
    "orm-cancel": samples.orm(control="CA"),
    "orm-status": samples.with_field(samples.orm(control="SC"), "ORC", 5, "CM"),
    "a47": samples.change_identifier(),
    "a40": samples.merge(),
}
# Delimiters, segment and frame separators, a NUL, the HL7 null, non-ASCII and non-UTF-8 bytes.
SPECIAL = [b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"\x0b", b"\x1c", b"\x00", b'""']
SPECIAL += ["É".encode(), b"\xff"]
MUTATIONS = ["flip", "byte", "special", "truncate", "insert", "delete", "drop-segment",
             "repeat-segment"]  # fmt: skip
TRIED: dict[str, int] = {}
OUTCOMES: dict[str, int] = {}
TABLES = (Patient, PatientIdentifier, ImagingOrder, RequestedProcedure, ScheduledStep)


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("hl7-fuzz")
    node = Node.from_settings(
        Settings(data_dir=folder / "data", database_url=f"sqlite:///{folder / 'index.sqlite3'}")
    )
    node.migrate()
    yield node
    node.stop()
    print(f"\nHL7 fuzzing: {sum(TRIED.values())} mutated messages tried: {TRIED}")
    print(f"acknowledgements: {dict(sorted(OUTCOMES.items()))}")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """One to four mutations of a message, chosen from the ways real feeds break."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not buffer:
            break
        kind = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, len(buffer) - 1))
        if kind == "flip":
            buffer[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            buffer[at] = draw(st.integers(0, 255))
        elif kind == "special":
            buffer[at : at + 1] = draw(st.sampled_from(SPECIAL))
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "delete":
            del buffer[at : at + draw(st.integers(1, 32))]
        else:
            segments = bytes(buffer).split(b"\r")
            index = draw(st.integers(0, len(segments) - 1))
            if kind == "drop-segment":
                del segments[index]
            else:
                segments.insert(index, segments[index])
            buffer = bytearray(b"\r".join(segments))
    return bytes(buffer)


def _error_code(err: str) -> str:
    """ERR-3's code (table 0357), whatever the message's delimiters: its leading digits."""
    fields = err.split(err[3]) if len(err) > 3 else []
    return "".join(itertools.takewhile(str.isdigit, fields[3])) if len(fields) > 3 else ""


def _state(node: Node) -> list[tuple[object, ...]]:
    with node.database.reading() as session:
        return [
            tuple(row) for table in TABLES for row in session.execute(select(table.__table__)).all()
        ]


@pytest.mark.parametrize("seed", list(SEEDS))
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
def test_mutated_messages_are_always_acknowledged(fuzz_node: Node, seed: str) -> None:
    receiver = Hl7Receiver(fuzz_node.hl7_inbox, fuzz_node.access, [samples.SENDER])
    receiver.receive(samples.adt("SEED-ADT"))  # the patient the orders are for

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same inputs on every run: a failure can be replayed
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(data=mutated(SEEDS[seed]))
    def receive_one(data: bytes) -> None:
        number = TRIED[seed] = TRIED.get(seed, 0) + 1
        # A control ID of its own, so that each message is applied, not taken as a resend.
        for control_id in (b"|ADT0001|", b"|ORM0001|", b"|OMI0001|", b"|ADT0040|", b"|ADT0047|"):
            data = data.replace(control_id, f"|F{number}|".encode())
        before = _state(fuzz_node)

        ack = receiver.receive(data, "fuzzer")

        segments = ack.decode("utf-8", errors="replace").split("\r")
        assert segments[0].startswith("MSH"), ack
        msa = next(s for s in segments if s.startswith("MSA"))
        code = msa[4:6]
        assert code in ("AA", "AE", "AR"), ack
        err = next((s for s in segments if s.startswith("ERR")), "")
        outcome = f"{code} {_error_code(err)}".strip()
        OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
        assert "internal error" not in msa, f"an unexpected exception: {ack!r}"
        if code != "AA":
            assert err, ack
            assert _state(fuzz_node) == before, f"{code} changed the database: {ack!r}"

    receive_one()
