"""`driftgate adapters merge` as an operator types it, against a gateway with keys enforced: real one-word adapters
(tests/e2e/tiny_lora.py) merged by peft into a registered candidate with its lineage, a `cat` over the backends'
rank limit refused with a 400 before any weights load, unknown sources and missing keys refused."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from gateway.config import AdaptersSettings, ModelRoute, state_url
from gateway.security.audit import AuditLog
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for
from tests.e2e.tiny_lora import adapter

BASE = "SmolLM2-135M-Instruct"  # the tiny adapters' base directory's name
DRIFTGATE = str(Path(sys.executable).with_name("driftgate"))


async def driftgate(*args: str, key: str) -> tuple[int, str]:
    """The CLI as typed in a shell, with the admin key in the environment."""
    process = await asyncio.create_subprocess_exec(
        DRIFTGATE,
        *args,
        env={**os.environ, "DRIFTGATE_API_KEY": key, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode()


async def test_merge_registers_a_candidate_with_its_sources_or_refuses_before_loading(
    tmp_path: Path, upstreams
) -> None:
    fake = await upstreams(BASE)
    settings = settings_for(
        ModelRoute(BASE, [fake.url], max_loras=4, max_lora_rank=8),
        read_s=120.0,
        home=str(tmp_path),
        adapters=AdaptersSettings(url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.1, reconcile_s=0.2),
    )
    keys = KeyStore(state_url(settings))
    admin = keys.create("admin", "admin")[1]
    keys.close()
    headers = {"authorization": f"Bearer {admin}"}
    async with running_gateway(settings) as client:
        client.timeout = 300
        url = str(client.base_url)
        for alias, word in (("alpha", "ALPHA"), ("bravo", "BRAVO")):
            body = {"alias": alias, "weights": str(adapter(word)), "base_model": BASE}
            assert (await client.post("/admin/adapters/", json=body, headers=headers)).status_code == 201

        no_key = await client.post("/admin/adapters/blend/merge", json={"sources": ["alpha@1", "bravo@1"]})
        assert no_key.status_code == 401
        unknown = await client.post(
            "/admin/adapters/blend/merge", json={"sources": ["alpha@1", "nope@3"]}, headers=headers
        )
        assert unknown.status_code == 404 and "`nope@3`" in unknown.json()["error"]["message"]

        # Two rank-8 adapters concatenated make rank 16, above this route's limit of 8.
        code, output = await driftgate(
            "adapters", "merge", "blend", "alpha@1", "bravo@1", "--method", "cat", "--url", url, key=admin
        )
        assert code == 1 and "rank 16" in output and "--max-lora-rank 8" in output, output
        assert (await client.get("/admin/adapters/blend", headers=headers)).status_code == 404  # nothing registered

        code, output = await driftgate(
            "adapters",
            "merge",
            "blend",
            "alpha@1",
            "bravo@1",
            "--method",
            "linear",
            "--weights",
            "0.5,0.5",
            "--url",
            url,
            key=admin,
        )
        assert code == 0 and "registered blend@1" in output and "alpha@1, bravo@1" in output, output
        version = (await client.get("/admin/adapters/blend", headers=headers)).json()["versions"][0]
        assert version["training_run"]["merged_from"] == ["alpha@1", "bravo@1"]
        assert version["training_run"]["method"] == "linear" and version["training_run"]["rank"] == 8
        merged = Path(version["weights"])
        assert json.loads((merged / "adapter_config.json").read_text())["r"] == 8
        assert (merged / "adapter_model.safetensors").is_file()
        promoted = await client.post("/admin/adapters/blend/promote", json={"version": 1}, headers=headers)
        assert promoted.status_code == 200 and fake.observed.loras["blend@1"] == str(merged)
    trail = AuditLog(state_url(settings))
    merged_entries = [entry for entry in trail.entries() if entry.action == "adapter.merged"]
    trail.close()
    assert [entry.subject for entry in merged_entries] == ["blend@1"]
