"""A block leaves nothing in the node's TMPDIR, also when it is cancelled: every template's batch script.

Parsl's worker pool starts a ``multiprocessing`` manager whose Unix socket lives in a ``pymp-*`` folder of
``TMPDIR``, and the pool is stopped by a signal, so without the templates' prelude every block left one such
folder behind on a site's node (seen with the real daemon).  Here the script Parsl writes from each template
(the provider's own ``worker_init`` and launcher) runs a stand-in worker pool that starts such a manager; its
process group is then sent SIGTERM, as ``LocalProvider.cancel`` does and ``scancel`` does to a batch job.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from bundle.endpoints.templates import get_template
from tests.unit.stand_ins import put_on_path

SLURM = ["slurm", "perlmutter", "frontier"]
PBS = ["pbs", "polaris", "aurora"]

POOL = (
    f"{sys.executable} -c 'import multiprocessing as mp, time\n"
    'if __name__ == "__main__":\n'
    "    m = mp.Manager()\n"
    '    print("pool-ready", flush=True)\n'
    "    time.sleep(600)'"
)
"""A stand-in for ``process_worker_pool.py``: the part of it that leaves a folder (``SpawnContext.Manager()``)."""


@pytest.fixture
def stand_ins(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """``sbatch``/``qsub`` that accept the script, and MPI launchers that are only found (never run here)."""
    scripts = {
        "sbatch": 'echo "Submitted batch job 4242"',
        "qsub": 'echo "4242.pbs-server"',
        "srun": "exit 1",
        "mpiexec": "exit 1",
    }
    put_on_path(tmp_path / "bin", scripts, monkeypatch)
    return tmp_path


def _script(name: str, options: dict[str, object], tmp_path: pathlib.Path) -> str:
    """The batch script Parsl's provider writes from template ``name`` for the stand-in pool."""
    config, _stood_in = get_template(name).load_offline(options)
    provider = config.engine.executor.provider
    if name == "local":  # LocalProvider runs the script itself: compose it as it does
        return f"{provider.worker_init}\n{provider.launcher(POOL, 1, 1)}\n"
    provider.script_dir = str(tmp_path / "scripts")
    (tmp_path / "scripts").mkdir(exist_ok=True)
    provider.submit(POOL, 1, "parsl.libe-gc-tmp")
    (script,) = (tmp_path / "scripts").glob("parsl.libe-gc-tmp*")
    return script.read_text()


def _run_and_cancel(script: str, tmp_path: pathlib.Path, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Run ``script`` in a process group of its own, wait for the pool's manager, SIGTERM the group.

    Returns the ``pymp-*`` folders in the block's TMPDIR while the pool ran (relative paths), and what that
    TMPDIR held once the block's shell had ended.
    """
    tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="blk-", dir="/tmp"))  # short, as a node's TMPDIR is
    path = tmp_path / "block.sh"
    path.write_text(script)
    proc = None
    try:
        proc = subprocess.Popen(
            ["bash", str(path)],
            cwd=tmp_path,
            env={**os.environ, **env, "TMPDIR": str(tmpdir)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        while not lines or lines[-1] not in ("pool-ready\n", ""):  # the launchers print a line or two first
            lines.append(proc.stdout.readline())
        assert lines[-1] == "pool-ready\n", (lines, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 30
        while not list(tmpdir.rglob("pymp-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        during = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("pymp-*"))
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
        return during, sorted(os.listdir(tmpdir))
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmpdir, ignore_errors=True)


CASES = [("local", "GlobusMPIEngine"), ("local", "GlobusComputeEngine")]
CASES += [(name, "GlobusMPIEngine") for name in SLURM + PBS]


@pytest.mark.parametrize(("name", "engine_type"), CASES)
def test_cancelled_block_leaves_nothing_in_tmpdir(
    name: str, engine_type: str, stand_ins: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    options: dict[str, object] = {"engine_type": engine_type}
    if name in SLURM + PBS:
        options["account"] = "abc"
    env = {"SLURM_JOB_NUM_NODES": "1"} if name in SLURM else {}
    if name in PBS:
        nodefile = tmp_path / "pbs_nodefile"
        nodefile.write_text("n1\nn1\n")
        env["PBS_NODEFILE"] = str(nodefile)
    during, left = _run_and_cancel(_script(name, options, tmp_path), tmp_path, env)
    # The pool's folder was inside the block's own folder, and that is gone with the block.
    assert len(during) == 1 and during[0].startswith("libe-gc-"), during
    assert left == []


@pytest.mark.parametrize("name", ["slurm", "pbs"])
def test_multinode_block_keeps_the_node_tmpdir(name: str, stand_ins: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """In a block of several nodes the folder would exist on the first node only: TMPDIR is left as it was."""
    env = {"SLURM_JOB_NUM_NODES": "2"}
    if name == "pbs":
        nodefile = tmp_path / "pbs_nodefile"
        nodefile.write_text("n1\nn2\n")
        env = {"PBS_NODEFILE": str(nodefile)}
    during, _left = _run_and_cancel(_script(name, {"account": "abc"}, tmp_path), tmp_path, env)
    assert len(during) == 1 and during[0].startswith("pymp-"), during


def test_too_long_tmpdir_is_left_as_it_was(stand_ins: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Where a socket's path in a new folder would not fit, the block keeps the node's TMPDIR (no new folder)."""
    script = _script("local", {}, tmp_path)
    long_dir = pathlib.Path(tempfile.mkdtemp(prefix="blk-" + "x" * 60, dir="/tmp"))
    try:
        out = subprocess.run(
            ["bash", "-c", script.split("set -e", 1)[0] + '\necho "TMPDIR=$TMPDIR"\nls -A "$TMPDIR"'],
            env={**os.environ, "TMPDIR": str(long_dir)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert f"TMPDIR={long_dir}\n" in out.stdout, out
        assert os.listdir(long_dir) == []
    finally:
        os.rmdir(long_dir)
