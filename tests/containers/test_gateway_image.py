"""The gateway image as an operator runs it: a config file and an admin key file, nothing else, behind a
published port. Keys are enforced, the image runs as a non-root user without torch, and drift detection
works inside it with the embedder exported at build time (a window of prompts gets a verdict, a topic shift
is confirmed), and the console serves its pages, assets and an Evidently report from the image's own package
data. A fake vLLM upstream shares the pod's network namespace."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest
import yaml

from demo.corpora import prompts
from tests.conftest import free_port
from tests.console_client import ASSETS, CSRF, console_client, log_in
from tests.containers.conftest import REPO, podman, wait_for

pytestmark = pytest.mark.containers

UPSTREAM_PORT = 8001
COMPOSE_CONFIG = REPO / "deploy" / "compose" / "driftgate.yaml"
CONSOLE_PAGES = ["/console", "/console/adapters", "/console/drift", "/console/loop", "/console/guards", "/console/keys"]


def gateway_config(reference: str) -> dict:
    return {
        "host": "0.0.0.0",
        "port": 8000,
        "models": [{"name": "smollm2", "backends": [f"http://127.0.0.1:{UPSTREAM_PORT}"]}],
        "auth": {"admin_key_file": "/run/secrets/driftgate-admin-key"},
        # The guard models baked into the image, as the compose stack points at them.
        "guards": yaml.safe_load(COMPOSE_CONFIG.read_text())["guards"],
        "drift": {
            "references": {"smollm2": reference},
            "detection": {"window_size": 60, "min_window_size": 50, "confirm_windows": 2, "clear_windows": 2},
        },
    }


def test_gateway_image_serves_with_a_key_file_and_detects_drift(gateway_image: str, pod, tmp_path: Path) -> None:
    port = free_port()
    name = pod(f"127.0.0.1:{port}:8000")
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "reference.txt").write_text("\n".join(prompts("support", 300, seed=7)))
    (config_dir / "driftgate.yaml").write_text(yaml.safe_dump(gateway_config("/etc/driftgate/reference.txt")))
    key = "dg-" + secrets.token_urlsafe(24)
    key_file = tmp_path / "admin-key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o444)
    config_dir.chmod(0o755)
    for path in config_dir.iterdir():
        path.chmod(0o444)

    podman(
        "run", "-d", "--pod", name, "--name", f"{name}-upstream", "--entrypoint", "python",
        "-v", f"{REPO / 'tests'}:/opt/fake/tests:ro", "-w", "/opt/fake",
        gateway_image, "-m", "tests.fake_upstream", "--port", str(UPSTREAM_PORT),
    )  # fmt: skip
    gateway = f"{name}-gateway"
    podman(
        "run", "-d", "--pod", name, "--name", gateway,
        "-v", f"{config_dir}:/etc/driftgate:ro", "-v", f"{key_file}:/run/secrets/driftgate-admin-key:ro",
        gateway_image,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/readyz", logs=lambda: podman("logs", gateway, check=False).stderr[-4000:])

    assert httpx.get(f"{base}/v1/models").status_code == 401
    wrong = httpx.get(f"{base}/v1/models", headers={"authorization": "Bearer dg-wrong"})
    assert wrong.status_code == 401
    admin = {"authorization": f"Bearer {key}"}
    models = httpx.get(f"{base}/v1/models", headers=admin)
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == ["smollm2"]

    # The image: a non-root user, no torch, the health check passes.
    assert podman("exec", gateway, "id", "-u").stdout.strip() == "10001"
    no_torch = "import importlib.util as u; print(u.find_spec('torch') is None)"
    assert podman("exec", gateway, "python", "-c", no_torch).stdout.strip() == "True"
    assert podman("healthcheck", "run", gateway, check=False).returncode == 0

    def send(texts: list[str]) -> None:
        with httpx.Client(base_url=base, headers=admin, timeout=30) as client:
            for text in texts:
                body = {"model": "smollm2", "messages": [{"role": "user", "content": text}]}
                assert client.post("/v1/chat/completions", json=body).status_code == 200

    def drift_state(windows: int) -> dict:
        deadline = time.monotonic() + 120
        while True:
            (alias,) = httpx.get(f"{base}/admin/drift", headers=admin).json()["aliases"]
            if alias["windows_checked"] >= windows or time.monotonic() > deadline:
                return alias
            time.sleep(0.5)

    assert httpx.get(f"{base}/admin/drift").status_code == 401
    send(prompts("support", 120, seed=8))  # the reference's topic: two windows, no drift
    calm = drift_state(2)
    assert calm["alias"] == "smollm2" and calm["status"] == "ok" and calm["windows_checked"] == 2, calm
    send(prompts("cooking", 120, seed=9))  # a new topic: confirmed after two windows over the threshold
    shifted = drift_state(4)
    assert shifted["status"] == "drifting", shifted

    with console_client(base) as console:  # the console, logged in with the key file's key
        assert log_in(console, key).status_code == 303
        pages = [console.get(path) for path in CONSOLE_PAGES]
        assert [page.status_code for page in pages] == [200] * len(CONSOLE_PAGES)
        assets = {asset for page in pages for asset in ASSETS.findall(page.text)}
        assert any("htmx" in asset for asset in assets) and any("uplot" in asset for asset in assets), assets
        assert {asset: console.get(asset).status_code for asset in assets} == dict.fromkeys(assets, 200)
        drift = console.get("/console/drift").text
        assert "drifting" in drift
        written = console.post("/console/drift/smollm2/report", data={"_csrf_token": CSRF.search(drift).group(1)})
        assert written.status_code == 303
        report = console.get("/console/drift/smollm2/report")
        assert report.status_code == 200 and "Drift in embeddings" in report.text
