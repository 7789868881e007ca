"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, ``initdb`` into a temp dir, a free port.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``; ``initdb`` on
PATH also works). When they are missing the tests fail rather than skip, so a CI image that lost its
install step is noticed: CI runs ``apt-get install -y postgresql`` itself, or sets
``DRIFTGATE_TEST_INSTALL_PG=1`` to let this module run apt-get. ``initdb`` refuses to run as root, so as
root the cluster runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

INSTALL_ENV = "DRIFTGATE_TEST_INSTALL_PG"
APT_INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
SUPERUSER = "driftgate"


class PgUnavailable(RuntimeError):
    """PostgreSQL server binaries are not installed and installing them was not allowed or failed."""


def find_bin_dir() -> Path | None:
    """The newest installed server's bin directory, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def ensure_bin_dir() -> Path:
    """Find the server binaries; install Debian's package only if ``DRIFTGATE_TEST_INSTALL_PG=1``."""
    found = find_bin_dir()
    if found is not None:
        return found
    if os.environ.get(INSTALL_ENV) != "1":
        raise PgUnavailable(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH). "
            f"Install them with `apt-get update && {' '.join(APT_INSTALL)}`, "
            f"or set {INSTALL_ENV}=1 to let the tests run apt-get."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], APT_INSTALL):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PgUnavailable(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    found = find_bin_dir()
    if found is None:
        raise PgUnavailable(f"{' '.join(APT_INSTALL)} succeeded but no initdb was installed")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    """One ``initdb``-made cluster in a temp dir, started and stopped with ``pg_ctl``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="driftgate-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        # UTF8 explicitly: with the C locale initdb picks SQL_ASCII, where psycopg returns text as bytes.
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "--locale=C", "-E", "UTF8", "-N")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"`` kills the server without a checkpoint, as a crash would."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        with psycopg.connect(**self.connect_args("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def connect_args(self, dbname: str) -> dict[str, object]:
        return {"host": "127.0.0.1", "port": self.port, "user": SUPERUSER, "dbname": dbname}

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log_file = self.root / "server.log"
            server_log = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}\n{server_log}")


@contextmanager
def running_cluster() -> Iterator[PgCluster]:
    """A started throwaway cluster for a test fixture; a missing install fails the test, it never skips."""
    import pytest

    try:
        cluster = PgCluster(ensure_bin_dir())
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
