"""The admin key file's key in the key store (real SQLite and PostgreSQL): stored hashed, rotated with the file,
revoked without it, and never mistaken for another key."""

from __future__ import annotations

import secrets
import threading

import pytest
import sqlalchemy as sa

from gateway.security.keys import FILE_KEY_NAME, FileKeyError, InvalidKey, KeyStore, api_keys, token_problem

OPERATOR_SECRET = secrets.token_hex(16)  # 32 characters, what `openssl rand -hex 16` prints


def issued_token(url: str) -> str:
    """A token of the shape the store issues, made by a store elsewhere (it is new to ``url``'s store)."""
    other = KeyStore("sqlite://")
    _, token = other.create("elsewhere", "admin")
    other.close()
    return token


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("short-secret", "holds 12 characters; a secret needs at least 32"),
        ("x" * 31, "holds 31 characters"),
        ("two words " + "x" * 40, "printable ASCII without spaces"),
        ("é" * 40, "printable ASCII without spaces"),
        ("tab\t" + "x" * 40, "printable ASCII without spaces"),
        ("dg_" + "x" * 40, "starts with dg_ but is not a key driftgate issued"),
        ("dg_0123456789ab_tooshort", "starts with dg_"),
    ],
)
def test_token_shapes_that_cannot_be_keys(token: str, problem: str) -> None:
    assert problem in (token_problem(token) or "")


def test_token_shapes_that_can(url: str) -> None:
    assert token_problem(OPERATOR_SECRET) is None
    assert token_problem("P@ss-" + "w0rd" * 8) is None
    _, token = KeyStore(url).create("ci", "admin")
    assert token_problem(token) is None


@pytest.mark.parametrize("kind", ["operator secret", "issued token"])
def test_the_file_token_is_stored_hashed_as_an_admin_key(url: str, kind: str) -> None:
    token = OPERATOR_SECRET if kind == "operator secret" else issued_token(url)
    store = KeyStore(url)
    change = store.sync_file_key(token)
    assert change.added and change.revoked == [] and change.key is not None
    key = store.verify(token)
    assert (key.id, key.name, key.scope) == (change.key.id, FILE_KEY_NAME, "admin")
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(api_keys)).one()
    assert token.encode() not in bytes(row.digest) + bytes(row.salt) and token not in str(row._mapping)
    again = store.sync_file_key(token)  # the next start: nothing changes
    assert (again.added, again.revoked, again.key) == (False, [], key)
    assert len(store.list()) == 1
    with pytest.raises(InvalidKey):
        store.verify(OPERATOR_SECRET[:-1] + ("0" if OPERATOR_SECRET[-1] != "0" else "1"))
    store.close()


def test_a_new_file_token_replaces_the_old_one_and_no_file_revokes_it(url: str) -> None:
    store = KeyStore(url)
    other, other_token = store.create("ops", "admin")
    old = store.sync_file_key(OPERATOR_SECRET).key
    new_token = secrets.token_urlsafe(40)
    rotated = store.sync_file_key(new_token)
    assert rotated.added and rotated.revoked == [old.id]
    with pytest.raises(InvalidKey):
        store.verify(OPERATOR_SECRET)
    assert store.verify(new_token).id == rotated.key.id
    unset = store.sync_file_key(None)
    assert unset.key is None and unset.revoked == [rotated.key.id]
    with pytest.raises(InvalidKey):
        store.verify(new_token)
    assert store.verify(other_token) == other  # keys made otherwise are never touched
    assert store.sync_file_key(None).revoked == []
    store.close()


def test_a_revoked_file_token_is_not_brought_back(url: str) -> None:
    store = KeyStore(url)
    key = store.sync_file_key(OPERATOR_SECRET).key
    store.revoke(key.id)  # say it leaked: an admin revoked it, the file still holds it
    with pytest.raises(FileKeyError, match="was revoked; put a new token in the file"):
        store.sync_file_key(OPERATOR_SECRET)
    with pytest.raises(InvalidKey):
        store.verify(OPERATOR_SECRET)
    store.close()


def test_the_file_cannot_take_over_another_key(url: str) -> None:
    store = KeyStore(url)
    existing, token = store.create("ci", "inference")
    with pytest.raises(FileKeyError, match=f"key id {existing.id} is already taken by key 'ci'"):
        store.sync_file_key(token)
    assert store.verify(token).scope == "inference"  # not promoted to admin
    with pytest.raises(ValueError, match="reserved"):
        store.create(FILE_KEY_NAME, "admin")
    store.close()


def test_replicas_starting_together_store_the_token_once(url: str) -> None:
    stores = [KeyStore(url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    changes, failures = [], []

    def start(store: KeyStore) -> None:
        barrier.wait()
        try:
            changes.append(store.sync_file_key(OPERATOR_SECRET))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len({change.key.id for change in changes}) == 1
    assert [key.name for key in stores[0].list()] == [FILE_KEY_NAME]
    for store in stores:
        store.close()
