"""A real ComfyUI server in a subprocess, for tests that need the HTTP API and the front end (``test_browser.py``).

Importing this module loads no ComfyUI. The server runs with the Python running the tests (the one that imports
ComfyUI, with ``LD_LIBRARY_PATH`` from the env's ``env.sh`` inherited), on CPU, on a free local port, with an
in-memory database and its own ``--base-directory``: this repo symlinked as ``custom_nodes/ltx23_trainer`` plus
any extra custom node folders given.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from comfy_harness import PACK_DIR_NAME, REPO_ROOT

BASE_SUBDIRS = ("models/checkpoints", "models/loras", "models/text_encoders", "output", "input", "temp", "user",
                "custom_nodes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, comfy_root: Path, base_dir: Path, extra_custom_nodes: dict[str, Path] | None = None,
                 extra_args: list[str] = (), cpu: bool = True):
        self.root = Path(comfy_root)
        self.base_dir = Path(base_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base_dir / "server.log"
        for sub in BASE_SUBDIRS:
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        links = {PACK_DIR_NAME: REPO_ROOT, **(extra_custom_nodes or {})}
        for name, target in links.items():
            link = self.base_dir / "custom_nodes" / name
            if not link.exists():
                link.symlink_to(Path(target).resolve(), target_is_directory=True)
        self.extra_args = ["--cpu"] * cpu + list(extra_args)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        cmd = [sys.executable, str(self.root / "main.py"), "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", "--disable-api-nodes", *self.extra_args]
        log = open(self.log_path, "w")
        # Its own process group, so stop() ends the server and anything it started, and nothing else.
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                self.get("/system_stats", timeout=2)
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # SIGTERM, not SIGINT: a server started from a background job inherits SIGINT as ignored.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as res:
            return json.loads(res.read())

    def post(self, path: str, data: dict, timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                body = res.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None
        return json.loads(body) if body else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
