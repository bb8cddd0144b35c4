"""Headless Chromium for the browser tests: Debian's ``chromium`` (``make browser``), never a download.

``dump_dom`` is Chromium's own ``--dump-dom`` (static pages); ``DevTools`` drives a page
that needs clicks (MLflow's UI) over the DevTools protocol with aiohttp's websocket client,
which ``ray[default]`` already installs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def chromium() -> str:
    """The browser's path, or a skip naming the reason (the one case a browser test may skip)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium when apt-get can run)")
    return browser


def headless(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile."""
    with tempfile.TemporaryDirectory(prefix="ktsweep-chromium-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.last_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.socket.send_json({"id": self.last_id, "method": method, "params": params})
        while True:  # events arrive in between; the answer carries our id
            message = await self.socket.receive_json(timeout=120)
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 120, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; fail with the page's text if it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.5)
        text = await self.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(f"timed out waiting for {what or expression}; the page shows:\n{(text or '')[:3000]}")

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def devtools(width: int = 1440, height: int = 900) -> AsyncIterator[DevTools]:
    """A fresh headless Chromium (own profile, DevTools on a free port), stopped on exit."""
    import aiohttp

    profile = tempfile.mkdtemp(prefix="ktsweep-chromium-")
    proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port = _devtools_port(Path(profile), proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                yield DevTools(socket)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    """Chromium writes the port it chose into the profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "chromium exited at start"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(marker.read_text().split()[0])
        time.sleep(0.2)
    raise TimeoutError("chromium did not open its DevTools port")


def artifacts_dir() -> Path:
    folder = Path(__file__).resolve().parents[1] / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder
