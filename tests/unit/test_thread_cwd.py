"""Each libEnsemble worker thread changes directory on its own (threads comms with sim directories)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from bundle.processes.thread_cwd import own_working_directory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own working directory is Linux's")
def test_threads_that_own_their_directory_move_only_themselves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = os.getcwd()
    seen: dict[str, tuple[str, bool]] = {}
    both_moved = threading.Barrier(2)

    def worker(name: str) -> None:
        assert own_working_directory() and own_working_directory()  # idempotent
        (tmp_path / name).mkdir()
        os.chdir(name)  # relative to this thread's directory, as libEnsemble's LocationStack does
        both_moved.wait(timeout=30)
        with open("out.txt", "w") as fh:
            fh.write(name)
        seen[name] = (os.getcwd(), (tmp_path / name / "out.txt").is_file())

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("sim0", "sim1")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert seen == {name: (str(tmp_path / name), True) for name in ("sim0", "sim1")}
    assert os.getcwd() == here, "the main thread must stay where it was"
