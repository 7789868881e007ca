"""Schemathesis fuzzing of the gateway's own OpenAPI document, against a real gateway over a fake upstream.

``schemathesis run`` (its own process, as an operator would run it) takes ``GET /openapi.json`` and
tests every operation in its coverage phase (boundary values, missing and wrongly typed fields,
undeclared methods) and its fuzzing phase (valid and invalid generated inputs), with guards off and on.
Every check it has must pass: no 5xx, statuses, content types, headers and bodies as documented, invalid
input rejected, valid input accepted; plus ``openai_error_shape`` (tests/integration/schema_fuzz_hooks.py)
on every error. Half the valid bodies name the configured model, so requests reach the backend.

``DRIFTGATE_FUZZ_EXAMPLES`` (default 50 per operation) trades depth for time; ``DRIFTGATE_FUZZ_SEED``
(default 1) fixes generation, so a failure reproduces run after run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from gateway.config import ModelRoute
from guards import GuardsSettings
from monitor.request_log import RequestLogSettings
from tests.conftest import running_gateway, settings_for

MODEL = "m"
EXAMPLES = os.environ.get("DRIFTGATE_FUZZ_EXAMPLES", "50")
SEED = os.environ.get("DRIFTGATE_FUZZ_SEED", "1")
ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("schemathesis")

pytestmark = pytest.mark.timeout(300)


async def schemathesis_run(base_url: str, workdir: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.schema_fuzz_hooks",
        "FUZZ_MODEL": MODEL,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        str(CLI), "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--phases", "coverage,fuzzing",
        "--mode", "all",
        "--max-examples", EXAMPLES,
        "--seed", SEED,
        "--generation-database", "none",
        "--request-timeout", "10",
        "--no-color",
        # The admin routes change the gateway (a created key turns authentication on for every later case, a
        # valid training spec starts a job): their own tests cover them against the same document.
        "--exclude-path-regex", "^/admin",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.parametrize("guards", [False, True], ids=["guards-off", "guards-on"])
async def test_every_operation_survives_generated_input(upstreams, tmp_path: Path, guards: bool) -> None:
    upstream = await upstreams(MODEL)
    # With guards on, the request log is on too (so /v1/feedback goes past "the log is off" to its lookups).
    request_log = RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.05) if guards else None
    settings = settings_for(
        ModelRoute(MODEL, [upstream.url], embeddings=True),
        guards=GuardsSettings(enabled=guards),
        request_log=request_log,
        home=str(tmp_path / "home"),
        read_s=10,
    )
    async with running_gateway(settings) as client:
        document = (await client.get("/openapi.json")).json()
        returncode, output = await schemathesis_run(str(client.base_url).rstrip("/"), tmp_path)
    assert set(document["paths"]) >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    assert returncode == 0, output
    assert upstream.observed.completed > 0  # valid generated requests reached the backend
