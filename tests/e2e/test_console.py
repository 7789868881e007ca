"""The console under `driftgate up` (granian workers, keys enforced) in front of the session's real vLLM: an admin
logs in through the form, and the overview's numbers come from real completions."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.console_client import console_client, log_in
from tests.e2e.conftest import MODEL, Embedded

pytestmark = pytest.mark.e2e
SINCE_START = re.compile(r"Since start: ([0-9]+) requests \([0-9.]+/s on average\),\s*p50 ([0-9]+) ms")


def test_the_console_shows_real_traffic_under_driftgate_up(embedded: Embedded) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    with httpx.Client(base_url=embedded.url, timeout=120, headers=embedded.headers) as api:
        for _ in range(2):
            assert api.post("/v1/chat/completions", json=body).status_code == 200
    with console_client(embedded.url) as console:
        assert console.get("/console").headers["location"] == "/console/login"
        login = log_in(console, embedded.key)
        assert login.status_code == 303 and "Secure" in login.headers["set-cookie"]
        deadline = time.monotonic() + 40  # the sampler reads the metrics every 10 s
        while time.monotonic() < deadline:
            stats = console.get("/console/overview/stats")
            assert stats.status_code == 200
            found = SINCE_START.search(stats.text)
            if found and int(found.group(1)) >= 2:
                break
            time.sleep(1)
        assert found and int(found.group(1)) >= 2 and int(found.group(2)) > 0, stats.text
        assert console.get("/console/adapters").status_code == 200
