"""The watcher's log (``LIBE_GC_WATCHER_LOG_DIR``): what it was told, and what it found and signalled at the end."""

import os
import pathlib
import subprocess
import sys

from bundle.endpoints.local import reaper
from bundle.processes import proctree


def test_the_watcher_logs_its_roots_and_what_it_signalled(tmp_path):
    driver = subprocess.Popen(["sleep", "60"])  # stands in for the driver: the watcher sweeps once it is gone
    # An interchange, say: found as a registered root only, and (its driver gone) not a child of this process.
    shell = subprocess.run(
        ["setsid", "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True
    )
    root = int(shell.stdout)
    token = "test-watcher-log"
    env = {**os.environ, reaper.LOG_DIR_ENV: str(tmp_path)}
    watcher = subprocess.Popen(
        [sys.executable, reaper.__file__, token, str(driver.pid)], stdin=subprocess.PIPE, env=env
    )
    try:
        assert watcher.stdin is not None
        watcher.stdin.write(f"{root} {proctree.start_time(root)!r}\n".encode())
        watcher.stdin.flush()
        driver.kill()
        driver.wait()
        assert watcher.wait(60) == 0
        assert not proctree.alive(root), "the registered root outlived the watcher"
    finally:
        if watcher.stdin is not None:
            watcher.stdin.close()
        for proc in (driver, watcher):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proctree.alive(root):
            os.kill(root, 9)
    log = pathlib.Path(tmp_path, f"watcher-{token}.log").read_text()
    assert f"watching driver {driver.pid}" in log
    assert f"root {root} started at" in log
    assert "driver is gone" in log
    assert f"{root}@" in log and ":same" in log, log  # the root, seen as the process registered
    assert f"signalling {root}:sleep" in log, log
    assert "done: 1 processes signalled" in log, log


def test_without_the_variable_the_watcher_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(reaper.LOG_DIR_ENV, raising=False)
    reaper._log_file("no-log")("a line")
    assert list(tmp_path.iterdir()) == []
