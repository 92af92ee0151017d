"""First start: no default password. `pedipacs serve` creates `admin` with a one-time password
shown once, and refuses to listen beyond the loopback address until an administrator has a
password of their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pedipacs.db.engine import Database
from pedipacs.model.origin import Origin
from pedipacs.security.accounts import AccountService
from support.server import free_port

# TEST-NET-1 (RFC 5737): never an address of this machine, so nothing can listen on it even if
# the refusal failed; the refusal must come first.
OUTSIDE_ADDRESS = "192.0.2.1"


def serve_once(data_dir: Path, database_url: str, host: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PEDIPACS_DATA_DIR": str(data_dir),
        "PEDIPACS_DATABASE_URL": database_url,
        "PEDIPACS_HOST": host,
        "PEDIPACS_DICOM_PORT": str(free_port()),
        "PEDIPACS_HTTP_PORT": str(free_port()),
        "PEDIPACS_DICOM_WORKERS": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "pedipacs", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_first_start_prints_a_one_time_password_and_stays_on_loopback(
    tmp_path: Path, database_url: str
) -> None:
    first = serve_once(tmp_path / "data", database_url, OUTSIDE_ADDRESS)

    assert first.returncode != 0
    assert f"refusing to listen on {OUTSIDE_ADDRESS}" in first.stderr
    [password] = re.findall(r"one-time password: (\S+)", first.stderr)

    database = Database(database_url)
    try:
        accounts = AccountService(database)
        signed_in = accounts.sign_in("admin", password, Origin.http(None, "127.0.0.1"))
        assert signed_in.must_change_password
        accounts.change_password(
            signed_in.principal, password, "a password only I know", Origin.cli("test")
        )
    finally:
        database.dispose()

    second = serve_once(tmp_path / "data", database_url, OUTSIDE_ADDRESS)
    assert "one-time password" not in second.stderr  # shown once, never again
    assert "refusing to listen" not in second.stderr
    # Past the check, binding the outside address fails: proof that the check let it through.
    assert second.returncode != 0
    assert "not available" in second.stderr or "Cannot assign" in second.stderr
