"""The command line as an operator uses it: demo data, import (folder, zip, DICOMDIR), peers,
settings from the environment and a TOML file."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, update

from pedipacs.db.tables import AuditEvent, Instance, PeerRow
from pedipacs.demo.generator import generate_demo_data
from support.files import PYDICOM_TEST_FILES


def pedipacs(
    *args: str, data_dir: Path, database_url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PEDIPACS_DATA_DIR": str(data_dir),
        "PEDIPACS_DATABASE_URL": database_url,
        "COLUMNS": "200",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "pedipacs", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def instance_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(Instance)).scalar_one())
    finally:
        engine.dispose()


def test_demo_data_then_import_stores_every_file_and_reports_duplicates(
    tmp_path: Path, database_url: str
) -> None:
    demo = tmp_path / "demo"
    made = pedipacs(
        "demo-data",
        str(demo),
        "--patients",
        "4",
        data_dir=tmp_path / "d",
        database_url=database_url,
    )
    assert made.returncode == 0, made.stderr
    files = sorted(demo.rglob("*.dcm"))
    assert files

    first = pedipacs("import", str(demo), data_dir=tmp_path / "d", database_url=database_url)
    assert first.returncode == 0, first.stderr
    assert instance_count(database_url) == len(files)
    assert (
        f"stored     │ {len(files)}" in first.stdout.replace("  ", " ")
        or str(len(files)) in first.stdout
    )

    again = pedipacs("import", str(demo), data_dir=tmp_path / "d", database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert "duplicates" in again.stdout
    assert instance_count(database_url) == len(files)


def test_import_of_a_zip_and_a_dicomdir_goes_through_the_same_ingest(
    tmp_path: Path, database_url: str
) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            bundle.write(PYDICOM_TEST_FILES / name, arcname=f"folder/{name}")

    # A DICOMDIR made by DCMTK's dcmmkdir, as found on a CD from another hospital.
    media = tmp_path / "media"
    (media / "IMAGES").mkdir(parents=True)
    for number, name in enumerate(("examples_overlay.dcm", "examples_palette.dcm"), start=1):
        (media / "IMAGES" / f"IM{number}").write_bytes((PYDICOM_TEST_FILES / name).read_bytes())
    made = subprocess.run(
        [
            "dcmmkdir",
            "-I",
            "+I",
            "+id",
            str(media),
            "+D",
            str(media / "DICOMDIR"),
            "IMAGES/IM1",
            "IMAGES/IM2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr

    result = pedipacs(
        "import",
        str(archive),
        str(media / "DICOMDIR"),
        data_dir=tmp_path / "d",
        database_url=database_url,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert instance_count(database_url) == 4


def test_import_names_each_refused_file_and_its_reason(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "ct.dcm").write_bytes((PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes())

    result = pedipacs("import", str(folder), data_dir=tmp_path / "d", database_url=database_url)
    assert result.returncode == 1
    assert "notes.txt" in result.stderr
    assert "NotDicomError" in result.stderr
    assert instance_count(database_url) == 1


def test_peer_registry_add_list_remove(tmp_path: Path, database_url: str) -> None:
    common = {"data_dir": tmp_path / "d", "database_url": database_url}
    added = pedipacs(
        "peer", "add", "ward", "--aet", "WARDWS", "--host", "127.0.0.1", "--port", "104", **common
    )
    assert added.returncode == 0, added.stderr
    duplicate = pedipacs(
        "peer", "add", "ward", "--aet", "OTHER", "--host", "127.0.0.1", "--port", "104", **common
    )
    assert duplicate.returncode == 1
    assert "exists" in duplicate.stderr

    listed = pedipacs("peer", "list", **common)
    assert "WARDWS" in listed.stdout

    removed = pedipacs("peer", "remove", "ward", **common)
    assert removed.returncode == 0, removed.stderr
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(PeerRow)).scalar_one() == 0
    engine.dispose()


def test_serve_help_lists_the_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pedipacs", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for option in ("--data-dir", "--database-url", "--ae-title", "--dicom-port", "--http-port"):
        assert option in result.stdout


def test_invalid_setting_is_a_clear_error(tmp_path: Path) -> None:
    result = pedipacs(
        "migrate",
        data_dir=tmp_path / "d",
        database_url="sqlite:///x.db",
        env={"PEDIPACS_AE_TITLE": "MUCH_TOO_LONG_AE_TITLE"},
    )
    assert result.returncode == 2
    assert "ae_title" in result.stderr


def test_toml_file_settings_apply_and_the_environment_wins(tmp_path: Path) -> None:
    from pedipacs.config import load_settings

    config = tmp_path / "pedipacs.toml"
    config.write_text('ae_title = "FROMTOML"\ndicom_port = 4242\n')
    os.environ.pop("PEDIPACS_AE_TITLE", None)
    try:
        os.environ["PEDIPACS_DICOM_PORT"] = "5151"
        settings = load_settings(config)
    finally:
        os.environ.pop("PEDIPACS_DICOM_PORT", None)
        os.environ.pop("PEDIPACS_CONFIG_FILE", None)
    assert settings.ae_title == "FROMTOML"
    assert settings.dicom_port == 5151


@pytest.fixture(autouse=True)
def _no_leaked_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEDIPACS_CONFIG_FILE", raising=False)


def test_generated_demo_data_imports_without_refusals(tmp_path: Path) -> None:
    summary = generate_demo_data(tmp_path / "demo", patients=2)
    assert summary.instances == len(summary.files)


def test_audit_verify_passes_on_the_trail_and_fails_once_a_record_is_changed(
    tmp_path: Path, database_url: str
) -> None:
    common = {"data_dir": tmp_path / "d", "database_url": database_url}
    imported = pedipacs("import", str(PYDICOM_TEST_FILES / "CT_small.dcm"), **common)
    assert imported.returncode == 0, imported.stderr

    intact = pedipacs("audit", "verify", **common)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(update(AuditEvent).where(AuditEvent.sequence == 1).values(user="x"))
    engine.dispose()
    tampered = pedipacs("audit", "verify", **common)

    assert intact.returncode == 0, intact.stderr
    assert "audit chain intact" in intact.stdout
    assert tampered.returncode == 1
    assert "broken at record 1" in tampered.stderr
