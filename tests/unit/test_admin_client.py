"""The CLI's admin client as an operator meets it: keys enforced, one-line errors and exit codes, no traceback.

The commands run through typer's CliRunner (in a thread: they make blocking HTTP calls) against a real
gateway on a socket over the fake upstream, with an admin and an inference key in its state database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from gateway.admin_client import AdminClient, GatewayRefused, GatewayUnreachable, base_url
from gateway.cli import app
from gateway.config import Settings, state_url
from gateway.security.keys import KeyStore
from tests.conftest import free_port, running_gateway
from tests.unit.adapters.conftest import BASE, adapter_settings, write_adapter

NO_KEY = {"DRIFTGATE_API_KEY": None}


async def driftgate(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={**NO_KEY, **(env or {})})


def one_line_error(result: Result, exit_code: int) -> str:
    """The result failed with ``exit_code`` and said why in exactly one line, without a traceback."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def keys_for(settings: Settings) -> tuple[str, str]:
    store = KeyStore(state_url(settings))
    _, admin = store.create("ops", "admin")
    _, inference = store.create("app", "inference")
    store.close()
    return admin, inference


async def test_keys_from_the_environment_or_option_and_one_line_refusals(tmp_path: Path, upstreams) -> None:
    fake = await upstreams(BASE)
    settings = adapter_settings(tmp_path, fake.url)
    admin, inference = keys_for(settings)
    async with running_gateway(settings) as client:
        url = str(client.base_url)
        missing = one_line_error(await driftgate("adapters", "list", "--url", url), 1)
        assert missing.startswith("error: 401 ") and "DRIFTGATE_API_KEY" in missing
        wrong = one_line_error(await driftgate("loop", "list", "--url", url, "--api-key", "dg_nope_nope"), 1)
        assert wrong.startswith("error: 401 ") and "no key sent" not in wrong
        scoped = one_line_error(await driftgate("adapters", "list", "--url", url, "--api-key", inference), 1)
        assert scoped.startswith("error: 403 permission_error:")

        as_admin = {"DRIFTGATE_API_KEY": admin}
        registered = await driftgate(
            "adapters",
            "register",
            "support",
            write_adapter(tmp_path / "one"),
            "--base-model",
            BASE,
            "--url",
            url,
            env=as_admin,
        )
        assert registered.exit_code == 0 and "registered support@1" in registered.output, registered.output
        promoted = await driftgate("adapters", "promote", "support", "support@1", "--url", url, "--api-key", admin)
        assert promoted.exit_code == 0 and "production support@1" in promoted.output, promoted.output
        listed = await driftgate("adapters", "list", "--url", url, env=as_admin)
        assert listed.exit_code == 0 and "support@1" in listed.output
        missing_version = one_line_error(
            await driftgate("adapters", "promote", "support", "9", "--url", url, env=as_admin), 1
        )
        assert missing_version.startswith("error: 404 ")
        assert one_line_error(await driftgate("adapters", "promote", "support", "other@1", "--url", url), 2)
        loop_off = one_line_error(await driftgate("loop", "list", "--url", url, env=as_admin), 1)
        assert loop_off.startswith("error: 404 ") and "loop is off" in loop_off


async def test_no_gateway_is_exit_3_and_a_bad_override_exit_2(tmp_path: Path) -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    for command in (["status"], ["adapters", "list"], ["loop", "show", "run-1"], ["drift", "report"]):
        line = one_line_error(await driftgate(*command, "--url", nothing, env={"DRIFTGATE_HOME": str(tmp_path)}), 3)
        assert line.startswith(f"error: no gateway at {nothing}: ConnectError")
    bad = one_line_error(await driftgate("adapters", "list", env={"DRIFTGATE_PORT": "eighty"}), 2)
    assert "invalid config" in bad and "port" in bad


async def test_approve_is_a_loop_command() -> None:
    assert (await driftgate("adapters", "approve", "run-1")).exit_code == 2
    assert "approve" in (await driftgate("loop", "--help")).output


def test_error_bodies_and_answers_that_are_not_the_gateways() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openai-shaped":
            error = {"message": "Rate limit reached.", "type": "rate_limit_error", "code": "rate_limit_exceeded"}
            return httpx.Response(429, json={"error": error})
        if request.url.path == "/proxy-page":
            return httpx.Response(502, text="<html>\n<h1>502 Bad Gateway</h1>\n</html>")
        if request.url.path == "/not-json":
            return httpx.Response(200, text="hello")
        assert request.headers["authorization"] == "Bearer dg_k"
        return httpx.Response(200, json={"ok": True})

    client = AdminClient("http://gw:8000/", "dg_k", transport=httpx.MockTransport(answer))
    assert client.get("/fine") == {"ok": True}
    with pytest.raises(GatewayRefused) as limited:
        client.get("/openai-shaped")
    assert (
        str(limited.value) == "429 rate_limit_error: Rate limit reached."
        and limited.value.code == "rate_limit_exceeded"
    )
    with pytest.raises(GatewayRefused) as proxied:
        client.post("/proxy-page", {"x": 1})
    assert proxied.value.status == 502 and "502 Bad Gateway" in proxied.value.message
    with pytest.raises(GatewayRefused, match="without JSON"):
        client.get("/not-json")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(GatewayUnreachable, match="no gateway at http://gw:8000: ConnectTimeout"):
        AdminClient("http://gw:8000", transport=httpx.MockTransport(down)).get("/x")


def test_base_url_dials_a_wildcard_bind_on_loopback() -> None:
    assert base_url(Settings(host="0.0.0.0", port=9000)) == "http://127.0.0.1:9000"
    assert base_url(Settings(host="::", port=9000)) == "http://[::1]:9000"
    assert base_url(Settings(host="gateway.internal", port=80)) == "http://gateway.internal:80"


async def test_version() -> None:
    from importlib import metadata

    shown = await driftgate("--version")
    assert shown.exit_code == 0 and shown.stdout == f"driftgate {metadata.version('driftgate')}\n"
