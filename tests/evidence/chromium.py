"""Headless Chromium (Debian's `chromium`) for the report tests: screenshot, rendered DOM, console output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

_CONSOLE = re.compile(r":CONSOLE:?\(?\d*\)?\] (.*)")


def _has_cjk_font() -> bool:
    listed = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True)
    return bool(listed.stdout.strip())


def chromium_binary() -> str:
    """The chromium binary; installs Debian's package (and a CJK font, or plates render as boxes)
    once if missing and we are root."""
    missing = [pkg for pkg, present in (("chromium", shutil.which("chromium")),
                                        ("fonts-wqy-microhei", shutil.which("fc-list") and _has_cjk_font()))
               if not present]  # fmt: skip
    if missing:
        if os.geteuid() != 0:
            pytest.fail(f"missing Debian packages {missing} (apt-get install {' '.join(missing)}); not root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(["apt-get", "install", "-y", "-q", *missing], capture_output=True, text=True,
                                env=env, timeout=900)  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"installing {missing} failed: {result.stderr[-2000:]}")
    found = shutil.which("chromium")
    assert found is not None
    return found


@dataclass
class Rendered:
    png: Path
    dom: str
    console: list[str]


def _run(args: list[str], page: Path) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="fw-chromium-") as profile:
        command = [
            chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            # Offline: any attempt to reach the network fails (and would show up as a console error).
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            *args, page.resolve().as_uri(),
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render(page: Path, png: Path, width: int = 1000, height: int = 2600) -> Rendered:
    """Screenshot ``page`` to ``png`` and dump its DOM after load; every console line is collected."""
    png.parent.mkdir(parents=True, exist_ok=True)
    shot = _run([f"--window-size={width},{height}", f"--screenshot={png.resolve()}"], page)
    dump = _run(["--dump-dom"], page)
    console = [m[1] for run in (shot, dump) for m in _CONSOLE.finditer(run.stderr)]
    assert png.exists() and png.stat().st_size > 0, f"no screenshot: {shot.stderr[-2000:]}"
    return Rendered(png, dump.stdout, console)
