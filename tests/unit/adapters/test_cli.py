"""`driftgate adapters ...` against a running gateway (the CLI runs in a thread: it makes blocking HTTP calls)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from tests.conftest import running_gateway
from tests.unit.adapters.conftest import BASE, adapter_settings


async def test_register_promote_canary_rollback_list(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        url = str(client.base_url)

        async def cli(*args: str) -> str:
            result = await asyncio.to_thread(CliRunner().invoke, app, ["adapters", *args, "--url", url])
            assert result.exit_code == 0, result.output
            return result.output

        for name in ("one", "two"):
            assert "registered support@" in await cli("register", "support", adapter_dir(name), "--base-model", BASE)
        assert "production support@1" in await cli("promote", "support", "1")
        assert "canary support@2 at 20%" in await cli("canary", "support", "support@2", "--share", "0.2")
        assert "production support@1" in await cli("rollback", "support")
        listing = await cli("list")
        assert "support@1" in listing and "support@2" in listing and "candidate" in listing
        failed = await asyncio.to_thread(CliRunner().invoke, app, ["adapters", "promote", "support", "9", "--url", url])
        assert failed.exit_code == 1 and "404" in failed.output
