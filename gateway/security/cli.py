"""``driftgate keys ...`` and ``driftgate audit verify``: run on the gateway's host, against its database."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.table import Table

from gateway.cli_options import ExitCode, console, fail
from gateway.security.audit import AuditLog
from gateway.security.keys import KeyStore


def create_key(url: str, name: str, scope: str, adapters: Optional[str], rpm: Optional[int], tpm: Optional[int],
               expires_days: Optional[float], max_concurrent: Optional[int] = None) -> None:  # fmt: skip
    if scope not in ("inference", "admin"):
        fail(f"--scope must be inference or admin, not {scope!r}", ExitCode.USAGE)
    store = KeyStore(url)
    try:
        key, token = store.create(
            name, scope,  # type: ignore[arg-type]
            adapters=[a.strip() for a in adapters.split(",") if a.strip()] if adapters else None,
            rpm=rpm, tpm=tpm, expires_in_s=expires_days * 86400 if expires_days else None,
            max_concurrent=max_concurrent,
        )  # fmt: skip
    except ValueError as exc:
        fail(str(exc), ExitCode.USAGE)
    finally:
        store.close()
    AuditLog(url).append("cli", "key.created", f"key:{key.id}", {"scope": key.scope, "name": name})
    console.print(f"[green]✓[/] key {key.id} ({scope}) created; it is shown once, store it now:")
    typer.echo(token)


def list_keys(url: str) -> None:
    store = KeyStore(url)
    table = Table(title="API keys")
    for column in ("id", "name", "scope", "adapters", "limits", "state"):
        table.add_column(column)
    now = time.time()
    for key in store.list():
        state = "revoked" if key.revoked_at else ("active" if key.usable(now) else "expired")
        limits = [
            f"{n} {unit}" for n, unit in ((key.rpm, "rpm"), (key.tpm, "tpm"), (key.max_concurrent, "at once")) if n
        ]
        table.add_row(key.id, key.name, key.scope, ",".join(key.adapters or ("*",)), ", ".join(limits) or "-", state)
    store.close()
    console.print(table)


def revoke_key(url: str, key_id: str) -> None:
    store = KeyStore(url)
    revoked = store.revoke(key_id)
    store.close()
    if not revoked:
        fail(f"no active key {key_id}", ExitCode.REFUSED)
    AuditLog(url).append("cli", "key.revoked", f"key:{key_id}", {})
    console.print(f"[green]✓[/] key {key_id} revoked")


def verify_audit(url: str) -> None:
    audit = AuditLog(url)
    problems = audit.verify()
    count = len(audit.entries())
    audit.close()
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/] entry {problem.seq}: {problem.problem}")
        raise typer.Exit(ExitCode.REFUSED)
    console.print(f"[green]✓[/] audit trail intact: {count} entries, every link and hash checks out")
