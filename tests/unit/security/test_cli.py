"""The key and audit commands as an operator runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.security.keys import KeyStore


def driftgate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRIFTGATE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], env=env, capture_output=True, text=True)


def test_create_list_revoke_and_an_audit_that_catches_tampering(tmp_path: Path) -> None:
    created = driftgate(tmp_path, "keys", "create", "--name", "billing-bot", "--scope", "inference",
                        "--adapters", "support,billing", "--rpm", "60")  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    store = KeyStore(f"sqlite:///{tmp_path / 'driftgate.db'}")
    key = store.verify(token)
    assert key.adapters == ("support", "billing") and key.rpm == 60
    listing = driftgate(tmp_path, "keys", "list")
    assert "billing-bot" in listing.stderr and token not in listing.stderr + listing.stdout
    assert driftgate(tmp_path, "keys", "revoke", key.id).returncode == 0
    assert driftgate(tmp_path, "keys", "revoke", key.id).returncode == 1
    assert driftgate(tmp_path, "keys", "create", "--name", "x", "--scope", "root").returncode == 2

    intact = driftgate(tmp_path, "audit", "verify")
    assert intact.returncode == 0 and "2 entries" in intact.stderr
    with sqlite3.connect(tmp_path / "driftgate.db") as db:
        db.execute("UPDATE audit_log SET subject = 'key:someone-else' WHERE seq = 1")
    tampered = driftgate(tmp_path, "audit", "verify")
    assert tampered.returncode == 1 and "entry 1" in tampered.stderr and "edited" in tampered.stderr
    store.close()
