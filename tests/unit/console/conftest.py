"""A gateway with everything the console shows switched on: adapters, the request log, guards, drift on model
``m`` (real MiniLM embeddings), and a manual-approval loop whose jobs are queued for a worker that never comes
(so an approved run stays visibly queued). Keys are enforced: an admin key and an inference key exist."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from demo.corpora import prompts
from gateway.config import AdaptersSettings, DriftWatchSettings, JobsSettings, ModelRoute, state_url
from gateway.console.settings import ConsoleSettings
from gateway.loop.policy import LoopPolicy, LoopSettings
from gateway.security.keys import KeyStore
from guards import GuardsSettings
from monitor.drift_types import DriftSettings
from monitor.request_log import RequestLogSettings
from tests.conftest import free_port, link_shared_models, running_gateway, settings_for
from tests.fake_upstream import FakeUpstream
from tests.unit.adapters.conftest import BASE, write_adapter
from tests.unit.monitor.conftest import MODEL_DIR

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class Console:
    client: httpx.AsyncClient  # already sends the admin key on /v1 and /admin (not on /console)
    url: str
    admin: str
    inference: str
    home: Path
    state_url: str  # keys, registry, audit


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def console_gateway(
    tmp_path: Path, upstream: FakeUpstream, sample_every_s: float = 0.5
) -> AsyncIterator[Console]:
    home = tmp_path / "home"
    home.mkdir()
    link_shared_models(home)  # the guards' and embedder's exported models
    reference = tmp_path / "support.txt"
    reference.write_text("\n".join(prompts("support", 200, seed=7)))
    port = free_port()
    settings = settings_for(
        ModelRoute(name=BASE, backends=[upstream.url], max_loras=4, max_lora_rank=16),
        ModelRoute("m", [upstream.url]),
        home=str(home),
        adapters=AdaptersSettings(url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.1, reconcile_s=0.2),
        port=port,
        guards=GuardsSettings(),
        request_log=RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.05),
        drift=DriftWatchSettings(
            references={"m": str(reference)},
            detection=DriftSettings(window_size=40, min_window_size=30, confirm_windows=2, clear_windows=2),
            embedder_dir=str(MODEL_DIR),
        ),
        loop=LoopSettings(default=LoopPolicy(approval="manual", cooldown_s=0, min_new_samples=4), tick_s=0.1),
        jobs=JobsSettings(runner="queue", workspace=str(tmp_path / "jobs")),
        console=ConsoleSettings(sample_every_s=sample_every_s),  # Secure cookies, as deployed
    )
    store = KeyStore(state_url(settings))
    _, admin = store.create("operator", "admin")
    _, inference = store.create("app", "inference")
    store.close()
    async with running_gateway(settings, port=port) as client:
        client.headers.update(auth(admin))
        yield Console(client, f"http://127.0.0.1:{port}", admin, inference, home, state_url(settings))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    """One gateway for a test module (it takes seconds to start: guards, embedder, drift reference)."""
    upstream = await FakeUpstream("console").start()
    try:
        async with console_gateway(tmp_path_factory.mktemp("console"), upstream) as running:
            yield running
    finally:
        await upstream.stop()


def browser(console: Console) -> httpx.AsyncClient:
    """A client that, like a browser, sends no Authorization header: only its cookies.

    It sends ``Secure`` cookies to http://127.0.0.1 as browsers do for loopback (a potentially trustworthy
    origin); Python's cookie jar keeps them for https only, so they are added here."""
    client = httpx.AsyncClient(base_url=console.url, timeout=10)

    async def secure_cookies(request: httpx.Request) -> None:
        held = [cookie for cookie in client.cookies.jar if request.url.path.startswith(cookie.path)]
        if held:
            request.headers["cookie"] = "; ".join(f"{cookie.name}={cookie.value}" for cookie in held)

    client.event_hooks["request"] = [secure_cookies]
    return client


async def register_versions(console: Console, alias: str, count: int = 2) -> None:
    """``count`` versions of ``alias`` through the admin API, the first promoted."""
    tmp_path = console.home.parent / alias
    tmp_path.mkdir()
    registered = tmp_path / "registered.jsonl"
    registered.write_text("".join(f'{{"prompt": "bill {i}?", "completion": "paid {i}"}}\n' for i in range(12)))
    for number in range(1, count + 1):
        body = {
            "alias": alias,
            "weights": write_adapter(tmp_path / f"v{number}"),
            "base_model": BASE,
            "dataset": str(registered),
            "eval_results": {"loss": round(2.0 - number / 10, 2)},
        }
        assert (await console.client.post("/admin/adapters/", json=body)).status_code == 201
    assert (await console.client.post(f"/admin/adapters/{alias}/promote", json={"version": 1})).status_code == 200


async def chat(console: Console, text: str, model: str = "m") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return await console.client.post("/v1/chat/completions", json=body)


async def log_in(client: httpx.AsyncClient, token: str, url: str = "") -> httpx.Response:
    """The login form as a browser posts it: its CSRF token from the page, the key in the form body (at ``url``,
    a gateway's address, or the client's own)."""
    page = await client.get(f"{url}/console/login")
    return await client.post(f"{url}/console/login", data={"api_key": token, "_csrf_token": csrf_of(page.text)})


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)
