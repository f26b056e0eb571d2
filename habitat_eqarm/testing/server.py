"""Run a real ``eqarm serve`` in a subprocess on loopback, for tests and benchmarks.

The server binds a free port and reports it through ``--port_file``; :func:`start_server`
returns once ``/health`` answers. Everything the server prints goes to ``log_path``, so tests
can check what it logged. :func:`app_server` serves an app built in this process (e.g. over
a scripted backend) on loopback HTTP the same way, in a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class ServerProcess:
    """A running ``eqarm serve``: its process, base URL (up to ``/v1``), log file and token."""

    process: subprocess.Popen
    base_url: str
    log_path: Path
    token: str | None = None
    episode_store: Path | None = None  # where the test put the episodes it serves by reference

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header, if the server has a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str) -> Any:
        """GET ``/v1/<path>`` (or an absolute path) with the token; the decoded JSON."""
        url = self.url(path)
        response = httpx.get(url, headers=self.headers, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """POST JSON to ``path`` with the token (not raising on error statuses)."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.post(self.url(path), json=body, headers=headers, timeout=300, **kwargs)

    def url(self, path: str) -> str:
        """``path`` under the server: ``/health`` stays as is, ``stats`` -> ``/v1/stats``."""
        root = self.base_url.removesuffix("/v1")
        return root + path if path.startswith("/") else f"{self.base_url}/{path}"

    def stats(self) -> dict[str, Any]:
        """``GET /v1/stats``."""
        return self.get("stats")

    def set_faults(self, spec: str, seed: int = 0) -> dict[str, Any]:
        """Replace the fault plan (needs a server started with ``--enable_test_faults true``)."""
        response = self.post("/admin/faults", {"spec": spec, "seed": seed})
        response.raise_for_status()
        return response.json()

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: open requests finish), then wait; SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    model: str | os.PathLike[str],
    args: Sequence[str] = (),
    *,
    log_path: str | os.PathLike[str],
    token: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> ServerProcess:
    """Start ``eqarm serve --model MODEL --port 0 ARGS`` on loopback and wait until it is up.

    ``token`` is handed over in the environment variable ``EQARM_SERVE_TOKEN`` (never on the
    command line, where other users could see it).
    """
    log_path = Path(log_path)
    port_file = Path(tempfile.mkdtemp(prefix="eqarm-serve-")) / "port.json"
    env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "habitat_eqarm.cli.main", "serve", "--model", str(model)]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--port_file", str(port_file), *args]
    if token:
        env["EQARM_SERVE_TOKEN"] = token
        cmd += ["--token_env", "EQARM_SERVE_TOKEN"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = None
    try:
        port = _wait_for_port(process, port_file, log_path, timeout)
        server = ServerProcess(process, f"http://127.0.0.1:{port}/v1", log_path, token)
        _wait_for_health(server, timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return server


@contextlib.contextmanager
def running_server(
    model: str | os.PathLike[str], args: Sequence[str] = (), **kwargs: Any
) -> Iterator[ServerProcess]:
    """:func:`start_server` as a context manager that stops the server on exit."""
    server = start_server(model, args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def _wait_for_port(
    process: subprocess.Popen, port_file: Path, log_path: Path, timeout: float
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"eqarm serve exited with {process.returncode}:\n{tail}")
        if port_file.is_file():
            return int(json.loads(port_file.read_text())["port"])
        time.sleep(0.1)
    raise TimeoutError(f"eqarm serve did not bind a port within {timeout:.0f}s (log: {log_path})")


def _wait_for_health(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url("/health"), timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(
        f"eqarm serve was not healthy within {timeout:.0f}s (log: {server.log_path})"
    )


@contextlib.contextmanager
def app_server(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free loopback port in a thread; yields its
    base URL (up to ``/v1``) once ``/health`` answers, and shuts it down on exit."""
    import uvicorn

    from habitat_eqarm.serve.app import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise TimeoutError(f"the in-process server on port {port} did not start")
            time.sleep(0.02)
        yield f"{base}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
