"""Lineage: each version's training run, data hashes, drift event and parent, followed back to the first.

The chain is read from what the loop writes into a version's ``training_run`` (tests/unit/loop/
test_loop_gateway.py checks the loop writes it); here versions carry it as registered, and
`driftgate adapters lineage` runs as an operator types it, against a gateway with keys enforced.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.adapters.lineage import lineage
from gateway.adapters.models import AdapterVersion, Snapshot
from gateway.domain_errors import NotFound
from tests.unit.adapters.conftest import BASE, write_adapter
from tests.unit.test_admin_client import one_line_error
from tests.unit.test_operator_commands import operated_gateway

DIGEST = "ab" * 32


def made_by_loop(parent: str, run: str) -> dict:
    return {
        "loop_run": run,
        "job": f"job-{run}",
        "parent": parent,
        "data_sha256": {"train": DIGEST, "eval-new": "cd" * 32},
        "drift_event": {"labels": {"alertname": "EmbeddingDrift", "alias": "support"}, "at": 1_790_000_000.0},
    }


def version(number: int, training_run: dict | None = None) -> AdapterVersion:
    return AdapterVersion("support", number, BASE, f"/w/{number}", "candidate", float(number), None, training_run)


def test_the_chain_follows_parents_back_to_a_version_without_one() -> None:
    versions = [version(1), version(2, made_by_loop("support@1", "r2")), version(3, made_by_loop("support@2", "r3"))]
    snapshot = Snapshot(1, {}, {v.name: v for v in versions})
    found = lineage(snapshot, "support", 3)
    assert [(s.version, s.parent, s.loop_run) for s in found.chain] == [
        ("support@3", "support@2", "r3"),
        ("support@2", "support@1", "r2"),
        ("support@1", None, None),
    ]
    assert found.chain[0].data_sha256["train"] == DIGEST
    assert found.chain[0].drift_event is not None and found.chain[0].drift_event["labels"]["alertname"]
    assert [s.version for s in lineage(snapshot, "support", 1).chain] == ["support@1"]


def test_a_parent_loop_written_by_hand_ends_the_chain_and_an_unknown_version_is_not_found() -> None:
    looped = [version(1, made_by_loop("support@2", "a")), version(2, made_by_loop("support@1", "b"))]
    snapshot = Snapshot(1, {}, {v.name: v for v in looped})
    assert [s.version for s in lineage(snapshot, "support", 2).chain] == ["support@2", "support@1"]
    with pytest.raises(NotFound):
        lineage(snapshot, "support", 9)


async def test_driftgate_adapters_lineage_prints_the_chain_with_keys_enforced(tmp_path: Path, upstreams) -> None:
    async with operated_gateway(tmp_path, upstreams) as operated:
        client = operated.client
        for number in (1, 2, 3):
            body = {"alias": "support", "weights": write_adapter(tmp_path / f"v{number}"), "base_model": BASE}
            if number > 1:
                body["training_run"] = made_by_loop(f"support@{number - 1}", f"run{number}")
            assert (await client.post("/admin/adapters/", json=body)).status_code == 201

        api = await client.get("/admin/adapters/support/versions/3/lineage")
        assert api.status_code == 200, api.text
        assert [s["version"] for s in api.json()["chain"]] == ["support@3", "support@2", "support@1"]
        missing = await client.get("/admin/adapters/support/versions/7/lineage")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "adapter_not_found", missing.text

        shown = await operated.driftgate("adapters", "lineage", "support@3", key=operated.admin)
        assert shown.exit_code == 0, shown.output
        for fragment in ("lineage of support@3", "run3 / job-run3", "run2", f"train {DIGEST[:12]}",
                         "EmbeddingDrift 2026-09-21", "3 versions; the line starts at support@1"):  # fmt: skip
            assert fragment in shown.output, (fragment, shown.output)

        assert one_line_error(await operated.driftgate("adapters", "lineage", "support@3"), 1).startswith("error: 401")
        no_scope = await operated.driftgate("adapters", "lineage", "support@3", key=operated.inference)
        assert one_line_error(no_scope, 1).startswith("error: 403 ")
        unknown = await operated.driftgate("adapters", "lineage", "support@7", key=operated.admin)
        assert one_line_error(unknown, 1).startswith("error: 404 ")
        bare = await operated.driftgate("adapters", "lineage", "support", key=operated.admin)
        assert bare.exit_code == 2 and "is not ALIAS@N" in bare.output
