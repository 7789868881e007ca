"""The console in a real browser: Debian's Chromium driven by Playwright (no browser download), against a gateway
with keys enforced, real traffic through a fake upstream, real drift windows and a real manual loop run.

One browser for the module; each test leaves screenshots under the artifacts folder it prints. Every page is
checked at 1280x800 and at phone width (375x812) for horizontal overflow.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from demo.corpora import prompts
from tests.unit.console.conftest import Console, chat, register_versions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("DRIFTGATE_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "artifacts")) / "console"
PAGES = ["/console", "/console/adapters", "/console/drift", "/console/loop", "/console/guards", "/console/keys"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium: run scripts/test-services.sh"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {ARTIFACTS}")
    async with async_playwright() as playwright:
        # --no-sandbox: CI and this machine run tests as root, where Chromium's sandbox cannot start.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


async def logged_in(browser: Browser, console: Console) -> Page:
    """A fresh browser context (its own cookies) logged in through the form."""
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(f"{console.url}/console")
    assert page.url.endswith("/console/login")  # no session: the login form
    await page.fill("#api_key", console.admin)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{console.url}/console")
    return page


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def plotted(page: Page, selector: str) -> dict:
    """The data a plot was drawn from, once uPlot has drawn it."""
    await page.wait_for_selector(f"{selector}[data-drawn='1'] canvas", timeout=10_000)
    return json.loads(await page.get_attribute(selector, "data-series"))


async def test_login_and_an_overview_of_real_traffic(browser: Browser, console: Console) -> None:
    for text in prompts("support", 20, seed=11):
        assert (await chat(console, text)).status_code == 200
    assert (await chat(console, "You are a worthless idiot, you stupid moron")).status_code == 400
    streamed = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Stream a greeting."}]}
    async with console.client.stream("POST", "/v1/chat/completions", json=streamed) as response:
        assert response.status_code == 200
        async for _ in response.aiter_raw():
            pass
    await asyncio.sleep(1.2)  # two sampler ticks
    page = await logged_in(browser, console)
    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    session = cookies["driftgate_console"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert console.admin not in json.dumps(await page.evaluate("({...localStorage, ...sessionStorage})"))
    traffic = await plotted(page, "#plot-traffic")
    assert max(traffic["series"]["requests/s"]) > 0 and max(traffic["series"]["4xx/s"]) > 0
    latency = await plotted(page, "#plot-latency")
    assert max(value or 0 for value in latency["series"]["p99 ms"]) > 0
    assert max(value or 0 for value in latency["series"]["TTFT p50 ms"]) > 0
    blocks = await plotted(page, "#plot-blocks")
    assert sum(blocks["series"]["toxicity"]) >= 1
    assert "Since start" in await page.inner_text("#stats")
    await shot(page, "overview")
    await page.context.close()


async def test_promote_with_the_button_moves_the_share(browser: Browser, console: Console) -> None:
    await register_versions(console, "support")
    page = await logged_in(browser, console)
    await page.goto(f"{console.url}/console/adapters")
    row = page.locator("tr[data-version='support@2']")
    assert (await row.locator(".share").inner_text()) == "0%"
    await row.locator("button[name=promote]").click()
    await page.wait_for_url(f"{console.url}/console/adapters")
    assert "support@2 promoted" in await page.inner_text(".flash")
    assert (await page.locator("tr[data-version='support@2'] .share").inner_text()) == "100%"
    assert (await page.locator("tr[data-version='support@1'] .share").inner_text()) == "0%"
    assert (await console.client.get("/admin/adapters/support")).json()["production"] == "support@2"
    await shot(page, "adapters-promoted")
    await page.context.close()


async def test_a_loop_run_timeline_and_its_approval(browser: Browser, console: Console) -> None:
    for i in range(4):  # the policy's minimum of new samples: corrected answers
        reply = await chat(console, f"How do I close account {i}?", model="support")
        correction = {"request_id": reply.headers["x-request-id"], "correction": f"Settings, then Close account {i}."}
        assert (await console.client.post("/v1/feedback", json=correction)).status_code == 201
    labels = {"alertname": "EmbeddingDrift", "alias": "support", "severity": "warning"}
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "driftgate-loop",
        "groupKey": "{}:{}",
        "alerts": [{"status": "firing", "labels": labels, "annotations": {}, "startsAt": "2026-11-22T00:00:00Z"}],
    }
    run = (await console.client.post("/admin/alerts", json=alert)).json()["runs"][0]
    assert run["status"] == "awaiting_approval"
    page = await logged_in(browser, console)
    await page.goto(f"{console.url}/console/loop")
    await page.click(f"a[href='/console/loop/{run['id']}']")
    await page.wait_for_selector(".timeline .step-alert")
    assert await page.locator(".timeline .step-decision").count() == 1
    await shot(page, "loop-run-awaiting-approval")
    await page.click("text=Approve this run")
    await page.wait_for_selector(".timeline .step-approval")
    assert "approved by key:" in await page.inner_text(".timeline .step-approval")
    # Approved, its data assembled and its training job queued (for a `driftgate train worker` that this test
    # never starts): the timeline shows each step.
    for _ in range(60):
        if await page.locator(".timeline .step-job").count():
            break
        await asyncio.sleep(0.25)
        await page.reload()
    shown = (await console.client.get(f"/admin/loop/{run['id']}")).json()
    assert shown["status"] not in ("awaiting_approval", "failed") and shown["job_id"]
    assert await page.locator(".timeline .step-data").count() == 1
    await shot(page, "loop-run-approved")
    await page.context.close()


async def test_a_drift_plot_once_drift_is_confirmed(browser: Browser, console: Console) -> None:
    for text in prompts("support", 80, seed=8) + prompts("cooking", 80, seed=9):
        assert (await chat(console, text)).status_code == 200
    for _ in range(300):  # embedded and scored off the request path
        report = (await console.client.get("/admin/drift")).json()
        if any(event["transition"] == "fired" for event in report["events"]):
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"drift was not confirmed: {report}")
    await asyncio.sleep(1.0)  # the sampler's next tick records the last window
    page = await logged_in(browser, console)
    await page.goto(f"{console.url}/console/drift")
    data = await plotted(page, "#plot-drift-m")
    scores, thresholds = data["series"]["score"], data["series"]["threshold"]
    assert len(scores) >= 2 and scores[-1] > thresholds[-1]
    assert "drifting" in await page.inner_text("#drift-m h2")
    assert await page.locator("#drift-m .prompts li .prompt").count() >= 1
    await shot(page, "drift-confirmed")
    # Evidently's report of that window, written from the page and opened from its link.
    await page.click("#drift-m button:has-text('Write report of the last window')")
    await page.wait_for_selector(".flash", timeout=120_000)
    assert "Evidently report written for m" in await page.inner_text(".flash")
    async with page.expect_response(f"{console.url}/console/drift/m/report") as opened:
        await page.click("#drift-m a:has-text('Evidently report')")
    report = await opened.value
    assert report.status == 200 and "sandbox" in report.headers["content-security-policy"]
    assert "Drift in embeddings" in await report.text()  # Evidently's EmbeddingsDrift metric
    await shot(page, "drift-report")
    await page.context.close()


async def test_create_a_key_then_revoke_it(browser: Browser, console: Console) -> None:
    page = await logged_in(browser, console)
    await page.goto(f"{console.url}/console/keys")
    await page.fill("input[name=name]", "browser-made")
    await page.click("text=Create key")
    token = (await page.inner_text("#new-token")).strip()
    assert token.startswith("dg_")
    assert (await chat(console, "hello", model="m")).status_code == 200
    key_id = token.split("_")[1]
    await shot(page, "key-created")
    await page.goto(f"{console.url}/console/keys")
    assert await page.locator("#new-token").count() == 0  # shown once
    await page.click(f"tr[data-key='{key_id}'] button:has-text('Revoke')")
    await page.wait_for_url(f"{console.url}/console/keys")
    assert (await page.inner_text(f"tr[data-key='{key_id}'] .state")) == "revoked"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    refused = await console.client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    await shot(page, "key-revoked")
    await page.context.close()


async def test_every_page_fits_desktop_and_phone_widths(browser: Browser, console: Console) -> None:
    page = await logged_in(browser, console)
    for viewport, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        await page.set_viewport_size(viewport)
        for path in PAGES:
            await page.goto(f"{console.url}{path}")
            await page.wait_for_load_state("load")
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} overflows {label} width by {overflow}px"
            assert await page.locator("nav a").count() == 6  # the navigation is reachable
            await shot(page, f"{label}{path.replace('/', '-')}")
    await page.context.close()
