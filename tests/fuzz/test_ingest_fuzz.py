"""Fuzzing the ingest path: mutated DICOM objects (flipped bytes, cut or inserted runs, lying
length fields) are stored or refused with a domain error, never anything else, and a refusal
leaves no bytes and no index row behind.

Hypothesis drives the mutations from every pydicom test file that ingest accepts. The number
of inputs tried is printed (`pytest -s`): `FUZZ_EXAMPLES` per seed file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pedipacs.config import Settings
from pedipacs.db.tables import Instance
from pedipacs.errors import PedipacsError
from pedipacs.model.origin import Origin
from pedipacs.node import Node
from support.files import PYDICOM_TEST_FILES

FUZZ_EXAMPLES = 500
ORIGIN = Origin.cli("fuzzer")
SEEDS = ("CT_small.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_rle_2frame.dcm", "test-SR.dcm",
         "rtplan.dcm", "JPEG2000.dcm")  # fmt: skip
TRIED: dict[str, int] = {}
OUTCOMES: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("fuzz")
    node = Node.from_settings(
        Settings(data_dir=folder / "data", database_url=f"sqlite:///{folder / 'index.sqlite3'}")
    )
    node.migrate()
    yield node
    node.stop()
    print(f"\ningest fuzzing: {sum(TRIED.values())} mutated objects tried: {TRIED}")
    print(f"outcomes: {dict(sorted(OUTCOMES.items()))}")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """One to four mutations of `data`, each chosen from the ways real files break."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not buffer:
            break
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length", "byte"]))
        at = draw(st.integers(0, max(len(buffer) - 1, 0)))
        if kind == "flip":
            buffer[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            buffer[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del buffer[at : at + draw(st.integers(1, 64))]
        elif kind == "length" and at + 4 <= len(buffer):
            # A 16- or 32-bit length field that lies: huge, odd or zero.
            value = draw(st.sampled_from([0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, len(buffer) * 2]))
            buffer[at : at + 4] = struct.pack("<I", value)
    return bytes(buffer)


def _index_size(node: Node) -> int:
    with node.database.reading() as session:
        return int(session.execute(select(func.count()).select_from(Instance)).scalar_one())


def _blob_count(node: Node) -> int:
    return sum(1 for _ in node.blob_store.iter_blobs())


@pytest.mark.parametrize("seed", SEEDS)
# A failing example is a whole DICOM object: its repr is long, which must not hide the failure.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
def test_mutated_objects_are_stored_or_refused_cleanly(fuzz_node: Node, seed: str) -> None:
    original = (PYDICOM_TEST_FILES / seed).read_bytes()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same inputs on every run: a failure can be replayed
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(data=mutated(original))
    def ingest_one(data: bytes) -> None:
        TRIED[seed] = TRIED.get(seed, 0) + 1
        before = (_index_size(fuzz_node), _blob_count(fuzz_node))
        try:
            stored = fuzz_node.ingest.ingest(data, ORIGIN)
        except PedipacsError as error:
            OUTCOMES[type(error).__name__] = OUTCOMES.get(type(error).__name__, 0) + 1
            assert (_index_size(fuzz_node), _blob_count(fuzz_node)) == before, "left-overs"
            return
        OUTCOMES[str(stored.outcome)] = OUTCOMES.get(str(stored.outcome), 0) + 1
        assert stored.sop_instance_uid
        assert _index_size(fuzz_node) == _blob_count(fuzz_node)

    ingest_one()


def test_the_seed_files_exist() -> None:
    assert all(Path(PYDICOM_TEST_FILES / seed).is_file() for seed in SEEDS)
