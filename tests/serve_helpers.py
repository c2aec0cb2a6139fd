"""The test suite's one `llmscisci serve builtin:tiny` subprocess on a free loopback port (the
session fixture ``server`` in tests/conftest.py), driven by the official `openai` client and by
raw HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO

from tests.conftest import REPO


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: IO[str]  # the server's stderr (a file: a pipe nobody reads would fill and block it)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def client(self, api_key: str = "EMPTY", **kwargs):
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=api_key, max_retries=0, timeout=60, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Every server `start` has started in this session (the suite means to start one).
STARTED: list[Server] = []


def start(*extra: str, env: dict[str, str] | None = None) -> Server:
    """`llmscisci serve builtin:tiny` on a free port; waits until /v1/models answers."""
    import httpx

    port = free_port()
    log = tempfile.TemporaryFile("w+", encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmscisci_cfg",
            "serve",
            "builtin:tiny",
            "--port",
            str(port),
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {Server(url, process, log).stderr()[-2000:]}")
        try:
            if httpx.get(
                f"{url}/models", timeout=1, headers={"authorization": "Bearer secret"}
            ).status_code in (200, 401):
                STARTED.append(Server(url, process, log))
                return STARTED[-1]
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("serve did not start within 90 s")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
    server.log.close()
