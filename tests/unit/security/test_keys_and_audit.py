"""Keys and the audit trail on real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from gateway.domain_errors import Invalid
from gateway.security.audit import AuditLog, audit_head, audit_log
from gateway.security.keys import InvalidKey, KeyStore, api_keys


def test_a_key_is_shown_once_and_stored_only_as_a_hash(url: str) -> None:
    store = KeyStore(url)
    key, token = store.create("ci", "inference", adapters=["support"], rpm=60)
    assert token.startswith(f"dg_{key.id}_")
    assert store.verify(token) == key
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(api_keys)).one()
    secret = token.removeprefix(f"dg_{key.id}_")  # the secret itself may hold "_"
    assert secret.encode() not in bytes(row.digest) + bytes(row.salt) and secret not in str(row._mapping)
    assert key.may_use("support") and key.may_use("support@3") and not key.may_use("billing")
    store.close()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "dg_nothing_x",
        lambda t: "sk-not-ours",
        lambda t: "",
    ],
)
def test_wrong_tokens_are_refused(url: str, mangle) -> None:
    store = KeyStore(url)
    _, token = store.create("ci", "admin")
    with pytest.raises(InvalidKey):
        store.verify(mangle(token))
    store.close()


def test_revoked_and_expired_keys_are_refused(url: str) -> None:
    store = KeyStore(url)
    revoked, revoked_token = store.create("old", "inference")
    _, expiring_token = store.create("temp", "inference", expires_in_s=60)
    assert store.revoke(revoked.id).revoked_at is not None and store.revoke(revoked.id) is None
    with pytest.raises(InvalidKey):
        store.verify(revoked_token)
    store.verify(expiring_token)
    with pytest.raises(InvalidKey):
        store.verify(expiring_token, now=time.time() + 61)
    assert [key.name for key in store.list()] == ["old", "temp"]
    store.close()


def test_bad_key_settings_are_refused(url: str) -> None:
    store = KeyStore(url)
    with pytest.raises(Invalid):
        store.create("x", "root")  # type: ignore[arg-type]
    with pytest.raises(Invalid):
        store.create("x", "inference", rpm=0)
    assert store.list() == []
    store.close()


def filled_audit(url: str) -> AuditLog:
    audit = AuditLog(url)
    audit.append("key:admin1", "key.created", "key:abc", {"scope": "inference"})
    audit.append("key:admin1", "adapter.promoted", "support@2", {"from": "support@1"})
    audit.append("gateway", "guard.blocked", "request:42", {"guard": "toxicity", "stage": "input"})
    audit.append("key:admin1", "adapter.rolled_back", "support@1", {})
    return audit


def test_an_intact_trail_verifies(url: str) -> None:
    audit = filled_audit(url)
    assert audit.verify() == []
    entries = audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(entries, entries[1:], strict=False))
    audit.close()


def test_an_edited_entry_is_found(url: str) -> None:
    audit = filled_audit(url)
    with audit.engine.begin() as conn:
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(subject="support@9"))
    assert [(p.seq, "edited" in p.problem) for p in audit.verify()] == [(2, True)]
    audit.close()


def test_a_deleted_entry_is_found(url: str) -> None:
    audit = filled_audit(url)
    with audit.engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == 2))
    problems = audit.verify()
    assert any("missing" in p.problem for p in problems) and any(p.seq == 3 and "link" in p.problem for p in problems)
    audit.close()


def test_a_truncated_tail_is_found(url: str) -> None:
    audit = filled_audit(url)
    with audit.engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == 4))
    (problem,) = audit.verify()
    assert "head says 4" in problem.problem
    audit.close()


def test_a_rewritten_entry_with_a_fresh_hash_still_breaks_the_chain(url: str) -> None:
    audit = filled_audit(url)
    from gateway.security.audit import entry_hash

    with audit.engine.begin() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == 2)).one()
        forged = entry_hash(2, row.time, row.actor, row.action, "support@9", row.details, row.prev_hash)
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(subject="support@9", hash=forged))
    assert [p.seq for p in audit.verify()] == [3]  # entry 3 still links to the old hash
    with audit.engine.connect() as conn:
        assert conn.execute(sa.select(audit_head.c.seq)).scalar_one() == 4
    audit.close()
