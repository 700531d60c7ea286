"""A real FHIR R4 server process on loopback for integration tests: SEKMET (PyPI `sekmet-fhir`).

`make fhir-server` installs it, pinned with hashes, into tools/fhir-server/.venv. tests/conftest.py makes its
fixtures available to every test:

    def test_x(real_fhir_server: RealFhirServer) -> None:
        httpx.get(f"{real_fhir_server.base_url}/metadata")

One server serves the whole session (about a second to start) and keeps its data in SQLite until the session
ends, so tests must not assume an empty store: give every test its own identifier values (see `unique`).
If the server is not installed the fixture fails (never skips) and says to run `make fhir-server`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO / "tools" / "fhir-server"
SERVER_BIN = SERVER_DIR / ".venv" / "bin" / "sekmet"
SERVER_CONFIG = SERVER_DIR / "settings.yaml"
LOCK = SERVER_DIR / "requirements.txt"
STAMP = SERVER_DIR / ".venv" / ".installed"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class RealFhirServer:
    base_url: str  # e.g. http://127.0.0.1:41234/fhir (no trailing slash)
    workdir: Path  # the server's working directory: data/sekmet.db, data/bulk/
    log_path: Path  # the server's stdout and stderr
    pid: int
    start_seconds: float  # from spawn to the first 200 from /metadata

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def unique(prefix: str = "t") -> str:
    """A value no other test in the session uses (identifiers, tags)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_installed() -> None:
    if not SERVER_BIN.exists() or not STAMP.exists():
        pytest.fail(
            f"the real FHIR test server is not installed ({SERVER_BIN.relative_to(REPO)} missing): "
            "run `make fhir-server`",
            pytrace=False,
        )
    if LOCK.stat().st_mtime > STAMP.stat().st_mtime:
        pytest.fail(
            f"{LOCK.relative_to(REPO)} changed since the FHIR test server was installed: run `make fhir-server`",
            pytrace=False,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group, then SIGKILL whatever is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:  # children may outlive the leader; the group id stays the leader's pid
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=STOP_TIMEOUT)


def _start(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path, float]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    log_path = workdir / f"server-{port}.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")},
        "SEKMET_CONFIG": str(SERVER_CONFIG),
        "SEKMET_PORT": str(port),
        "SEKMET_BASE_URL": base_url,
        "PYTHONUNBUFFERED": "1",
    }
    t0 = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(SERVER_BIN), "serve", "--config", str(SERVER_CONFIG), "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so _stop reaches every child
        )
    try:
        return proc, base_url, log_path, _wait_ready(proc, base_url, t0)
    except BaseException:
        _stop(proc)
        raise


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, t0: float) -> float:
    deadline = t0 + START_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with code {proc.returncode}")
            try:
                r = client.get(f"{base_url}/metadata", headers={"Accept": FHIR_JSON})
                if r.status_code == 200 and r.json().get("resourceType") == "CapabilityStatement":
                    return time.monotonic() - t0
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"/metadata did not answer within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)


@contextlib.contextmanager
def running_server(workdir: Path) -> Iterator[RealFhirServer]:
    """A server process with its store in ``workdir``, stopped on exit."""
    _check_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for _attempt in range(3):  # the free port can be taken between choosing it and the server binding it
        try:
            proc, base_url, log_path, seconds = _start(workdir)
        except RuntimeError as e:
            logs = sorted(workdir.glob("server-*.log"), key=lambda p: p.stat().st_mtime)
            errors.append(f"{e}\n{_tail(logs[-1], 20) if logs else ''}")
            continue
        break
    else:
        pytest.fail("the real FHIR test server did not start:\n" + "\n---\n".join(errors), pytrace=False)
    try:
        yield RealFhirServer(base_url=base_url, workdir=workdir, log_path=log_path, pid=proc.pid, start_seconds=seconds)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def real_fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealFhirServer]:
    """One server for the session: tests share its store."""
    with running_server(tmp_path_factory.mktemp("fhir-server")) as server:
        yield server


@pytest.fixture
def fresh_fhir_server(tmp_path: Path) -> Iterator[RealFhirServer]:
    """A server of the test's own, with an empty store (about a second to start): for whole-server
    pulls whose counts another test's resources would change."""
    with running_server(tmp_path / "fhir-server") as server:
        yield server


@pytest.fixture(scope="session")
def real_fhir_base_url(real_fhir_server: RealFhirServer) -> str:
    return real_fhir_server.base_url
