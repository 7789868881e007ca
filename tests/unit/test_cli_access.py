"""Who may reach a started gateway, as an operator sets it up: `driftgate serve` (and `up`) as real processes
with a config file, in front of a fake upstream.

The bind rule (no open gateway on a non-loopback address by accident), the admin key file (stored, rotated,
revoked with the file), the scrape token on /metrics, and bad token files refused before anything starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from gateway.security.keys import FILE_KEY_NAME, InvalidKey, KeyStore
from tests.conftest import free_port

DRIFTGATE = [sys.executable, "-m", "gateway.cli"]
ADMIN_TOKEN = "operator-made-admin-secret-0123456789abcdef"
ROTATED_TOKEN = "another-operator-made-secret-fedcba9876543210"
SCRAPE_TOKEN = "prometheus-scrape-token-0123456789abcdef"


def exposed_address() -> tuple[str, str]:
    """(address to bind, address to connect to): one of this machine's non-loopback addresses if it has one,
    else every address, reached through loopback."""
    with contextlib.suppress(OSError):
        for address in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split():
            ip = ipaddress.ip_address(address)
            if ip.version == 4 and not ip.is_loopback:
                return address, address
    return "0.0.0.0", "127.0.0.1"


BIND, CONNECT = exposed_address()


class GatewayUnderTest:
    """What a test needs of one configured gateway: its config file, state and how to start it."""

    def __init__(self, tmp_path: Path, backend: str, host: str = BIND, workers: int = 1, **auth: object) -> None:
        self.dir, self.host, self.port, self.backend, self.workers = tmp_path, host, free_port(), backend, workers
        self.config = tmp_path / "driftgate.yaml"
        self.write(**auth)

    def write(self, **auth: object) -> None:
        self.config.write_text(
            yaml.safe_dump(
                {
                    "host": self.host,
                    "port": self.port,
                    "workers": self.workers,
                    "home": str(self.dir / "home"),
                    "guards": {"enabled": False},
                    "request_log": None,
                    "models": [{"name": "m", "backends": [self.backend]}],
                    "auth": {"cache_ttl_s": 0.2, **auth},
                }
            )
        )

    @property
    def url(self) -> str:
        return f"http://{CONNECT if self.host == BIND else '127.0.0.1'}:{self.port}"

    def store(self) -> KeyStore:
        return KeyStore(f"sqlite:///{self.dir / 'home' / 'driftgate.db'}")

    def start(self, command: str = "serve", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """A start that must be refused: its result, once it has exited."""
        return subprocess.run(
            [*DRIFTGATE, command, "--config", str(self.config)],
            env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    @contextlib.contextmanager
    def running(self, env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
        log = (self.dir / "serve.log").open("w+")
        process = subprocess.Popen(
            [*DRIFTGATE, "serve", "--config", str(self.config)], env={**os.environ, **(env or {})}, stderr=log
        )
        try:
            with httpx.Client(base_url=self.url, timeout=10) as client:
                for _ in range(600):
                    with contextlib.suppress(httpx.TransportError):
                        if client.get("/healthz").status_code == 200:
                            break
                    assert process.poll() is None, f"driftgate serve exited: {Path(log.name).read_text()}"
                    time.sleep(0.1)
                client.log = Path(log.name)  # type: ignore[attr-defined]
                yield client
        finally:
            process.send_signal(signal.SIGINT)
            # A worker still starting when SIGINT comes can hang in granian until shutdown.grace_s kills it.
            assert process.wait(60) == 0
            log.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refused_with(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """The one error line a refused start printed last; it must hold every phrase."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert errors == lines[-1:] and lines[-1].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[-1]
    return lines[-1]


def nothing_listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def active_key_ids(gateway: GatewayUnderTest) -> list[str]:
    store = gateway.store()
    try:
        return [key.id for key in store.list() if key.revoked_at is None]
    finally:
        store.close()


@pytest.fixture
def backend() -> Iterator[str]:
    """A fake upstream in its own process (the tests' HTTP client is synchronous), for /readyz."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", "--port", str(port)])
    for _ in range(300):
        if not nothing_listens(port):
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(20)


def test_an_open_gateway_on_a_non_loopback_address_refuses_to_start(tmp_path: Path) -> None:
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9")
    line = refused_with(gateway.start(), f"refusing to listen on {BIND}:{gateway.port} without an API key")
    for fix in ("driftgate keys create", "auth.admin_key_file", "DRIFTGATE_AUTH__ADMIN_KEY_FILE", "auth.allow_open"):
        assert fix in line
    assert nothing_listens(gateway.port)


def test_up_refuses_before_vllm_starts(tmp_path: Path) -> None:
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9")
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    refused_with(gateway.start("up"), "refusing to listen")
    assert not (tmp_path / "home" / "logs").exists() and not (tmp_path / "home" / "models").exists()
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= before
    assert nothing_listens(gateway.port)


def test_allow_open_binds_an_open_gateway_on_purpose(tmp_path: Path) -> None:
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", allow_open=True)
    with gateway.running() as client:
        assert client.get("/v1/models").status_code == 200  # no key needed
        assert client.get("/admin/keys").json() == {"data": []}
    assert "auth.allow_open: listening on" in " ".join(client.log.read_text().split())


def test_loopback_stays_open_by_default(tmp_path: Path) -> None:
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", host="127.0.0.1")
    with gateway.running() as client:
        assert client.get("/v1/models").status_code == 200


def test_the_key_file_opens_a_non_loopback_bind_and_rotates_with_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "admin-key"
    key_file.write_text(ADMIN_TOKEN + "\n")  # as `echo` writes it
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", admin_key_file=str(key_file))
    with gateway.running() as client:
        assert client.get("/admin/keys").status_code == 401
        listed = client.get("/admin/keys", headers=bearer(ADMIN_TOKEN))
        assert listed.status_code == 200
        [stored] = listed.json()["data"]
        assert (stored["name"], stored["scope"]) == (FILE_KEY_NAME, "admin")
        assert client.get("/v1/models").status_code == 401  # keys are now required everywhere

    key_file.write_text(ROTATED_TOKEN)
    with gateway.running() as client:
        assert client.get("/admin/keys", headers=bearer(ADMIN_TOKEN)).status_code == 401
        assert client.get("/admin/keys", headers=bearer(ROTATED_TOKEN)).status_code == 200
    assert len(active_key_ids(gateway)) == 1

    gateway.write()  # the setting removed: the file's key is revoked, and no key is left
    refused_with(gateway.start(), "refusing to listen")
    store = gateway.store()
    with pytest.raises(InvalidKey):
        store.verify(ROTATED_TOKEN)
    _, ops_token = store.create("ops", "admin")
    store.close()
    with gateway.running() as client:
        assert client.get("/admin/keys", headers=bearer(ROTATED_TOKEN)).status_code == 401
        assert client.get("/admin/keys", headers=bearer(ops_token)).status_code == 200


def test_the_key_file_setting_reads_its_environment_override(tmp_path: Path) -> None:
    key_file = tmp_path / "admin-key"
    key_file.write_text(ADMIN_TOKEN)
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9")
    with gateway.running(env={"DRIFTGATE_AUTH__ADMIN_KEY_FILE": str(key_file)}) as client:
        assert client.get("/admin/keys", headers=bearer(ADMIN_TOKEN)).status_code == 200
        assert client.get("/admin/keys", headers=bearer(ROTATED_TOKEN)).status_code == 401


def test_metrics_need_the_scrape_token_or_an_admin_key(tmp_path: Path, backend: str) -> None:
    scrape_file, key_file = tmp_path / "scrape-token", tmp_path / "admin-key"
    scrape_file.write_text(SCRAPE_TOKEN + "\n")
    key_file.write_text(ADMIN_TOKEN)
    gateway = GatewayUnderTest(tmp_path, backend, host="127.0.0.1", workers=2, admin_key_file=str(key_file))
    store = gateway.store()
    _, inference_token = store.create("app", "inference")
    store.close()
    env = {"DRIFTGATE_AUTH__METRICS_TOKEN_FILE": str(scrape_file)}
    with gateway.running(env=env) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
        assert "auth.metrics_token_file" in error["message"]
        assert client.get("/metrics", headers=bearer(SCRAPE_TOKEN + "x")).status_code == 401
        assert client.get("/metrics", headers={"authorization": SCRAPE_TOKEN}).status_code == 401
        assert client.get("/metrics", headers=bearer(inference_token)).status_code == 403
        for token in (SCRAPE_TOKEN, ADMIN_TOKEN) * 4:  # new connections: both workers read the token file
            scraped = client.get("/metrics", headers={**bearer(token), "connection": "close"})
            assert scraped.status_code == 200 and "driftgate_" in scraped.text
        for probe in ("/healthz", "/readyz"):
            assert client.get(probe).status_code == 200
        # The scrape token is for /metrics only.
        assert client.get("/admin/keys", headers=bearer(SCRAPE_TOKEN)).status_code == 401
        assert client.get("/v1/models", headers=bearer(SCRAPE_TOKEN)).status_code == 401


BAD_FILES = [
    ("missing", None, "does not exist"),
    ("empty", b"", "is empty; it must hold one token"),
    ("blank", b" \n\n", "is empty; it must hold one token"),
    ("two tokens", f"{ADMIN_TOKEN}\n{ROTATED_TOKEN}\n".encode(), "holds more than one word"),
    ("short", b"hunter2\n", "holds 7 characters; a secret needs at least 32"),
    ("mangled dg_ key", b"dg_0123456789ab_not-what-the-store-issues", "starts with dg_ but is not a key driftgate"),
    ("binary", bytes(range(128, 192)), "is not UTF-8 text"),
    ("directory", "dir", "cannot be read: Is a directory"),
]


def _bad_file(tmp_path: Path, name: str, content: bytes | str | None) -> Path:
    path = tmp_path / name.replace(" ", "-")
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(("name", "content", "problem"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_bad_admin_key_file_stops_the_start_in_one_line(tmp_path: Path, name, content, problem: str) -> None:
    path = _bad_file(tmp_path, name, content)
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", admin_key_file=str(path))
    refused_with(gateway.start(), f"auth.admin_key_file: {path} {problem}")
    assert nothing_listens(gateway.port)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_admin_key_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "admin-key"
    path.write_text(ADMIN_TOKEN)
    path.chmod(0)
    refused_with(GatewayUnderTest(tmp_path, "http://127.0.0.1:9", admin_key_file=str(path)).start(), "cannot be read")


def test_a_bad_file_changes_nothing_stored(tmp_path: Path) -> None:
    key_file = tmp_path / "admin-key"
    key_file.write_text(ADMIN_TOKEN)
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", admin_key_file=str(key_file))
    with gateway.running():
        pass
    stored = active_key_ids(gateway)
    key_file.write_text("")  # a botched rotation
    refused_with(gateway.start(), "is empty")
    assert active_key_ids(gateway) == stored
    store = gateway.store()
    assert store.verify(ADMIN_TOKEN).name == FILE_KEY_NAME
    store.close()


def test_a_revoked_file_key_is_not_revived_by_a_restart(tmp_path: Path) -> None:
    key_file = tmp_path / "admin-key"
    key_file.write_text(ADMIN_TOKEN)
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", admin_key_file=str(key_file))
    with gateway.running() as client:
        [key] = client.get("/admin/keys", headers=bearer(ADMIN_TOKEN)).json()["data"]
        assert client.delete(f"/admin/keys/{key['id']}", headers=bearer(ADMIN_TOKEN)).status_code == 200
    refused_with(gateway.start(), f"auth.admin_key_file: {key_file}: its key {key['id']} was revoked")


def test_a_missing_metrics_token_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "scrape-token"
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", host="127.0.0.1", metrics_token_file=str(path))
    refused_with(gateway.start(), f"auth.metrics_token_file: {path} does not exist")
    assert nothing_listens(gateway.port)


def test_up_with_a_bad_key_file_starts_no_vllm(tmp_path: Path) -> None:
    path = tmp_path / "admin-key"
    path.write_text("")
    gateway = GatewayUnderTest(tmp_path, "http://127.0.0.1:9", host="127.0.0.1", admin_key_file=str(path))
    refused_with(gateway.start("up"), f"auth.admin_key_file: {path} is empty")
    assert not (tmp_path / "home" / "logs").exists() and not (tmp_path / "home" / "models").exists()
    assert nothing_listens(gateway.port)
