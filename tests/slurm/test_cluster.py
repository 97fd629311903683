"""The test cluster itself: accounting answers as at the centers, on loopback only, no daemon holds the lock, and
MPI steps over several nodes start (the nodes' MPI environment)."""

from __future__ import annotations

import re
import subprocess

import psutil
from parsl.jobs.states import JobState
from parsl.launchers import SimpleLauncher
from parsl.providers import SlurmProvider

from tests.polling import wait_for
from tests.slurm.conftest import JOB_PREFIX
from tests.slurm.endpoint_under_test import sacct_fields
from tests.slurm.multinode import CLUSTER_LOCK, SLURM_SH, lock_holders, ranks_of


def test_no_daemon_holds_the_cluster_lock(slurm):
    """A daemon ``.ci/slurm.sh up`` started must not inherit its lock, or every ``stop-node`` waits for it."""
    assert lock_holders(CLUSTER_LOCK) == [], f"processes holding {CLUSTER_LOCK}: the next stop-node would wait"


def test_status_says_accounting_answers(slurm):
    out = subprocess.run(["bash", str(SLURM_SH), "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "accounting: answers (sacct -X)" in out.stderr, out.stderr


def _listening(names: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of the TCP sockets the processes called ``names`` listen on."""
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.pid:
            continue
        try:
            name = psutil.Process(conn.pid).name()
        except psutil.Error:
            continue
        if name in names:
            found.append((name, conn.laddr.ip, conn.laddr.port))
    return found


def test_accounting_listens_on_loopback_only(slurm):
    dbd = _listening(("slurmdbd",))
    assert dbd, "slurmdbd does not listen"
    assert all(ip == "127.0.0.1" for _, ip, _ in dbd), dbd
    # MariaDB serves slurmdbd through its Unix socket only.
    assert any(p.info["name"] == "mariadbd" for p in psutil.process_iter(["name"])), "mariadbd is not running"
    assert _listening(("mariadbd", "mysqld")) == []


def _listed(job: str) -> bool:
    out = subprocess.run(["sacct", "-X", "--noheader", "-j", job], capture_output=True, text=True, timeout=30)
    return bool(out.stdout.strip())


def test_parsl_reads_job_states_from_accounting(slurm, tmp_path):
    """Parsl's SlurmProvider takes its sacct path, and sacct records a failed block job as FAILED."""
    provider = SlurmProvider(partition="debug", walltime="00:01:00", cmd_timeout=30, launcher=SimpleLauncher())
    assert provider._cmd.startswith("sacct "), f"Parsl falls back to squeue: {provider._cmd}"
    provider.script_dir = str(tmp_path)
    job = provider.submit("exit 3", 1, job_name="parsl.libe-gc-cluster-check")
    assert job
    # A job reaches the accounting database a moment after sbatch; one sacct does not list yet is one
    # Parsl counts as COMPLETED.  (An endpoint polls a block it submitted a strategy period, 5 s, later at the soonest.)
    assert wait_for(lambda: _listed(job), 30, period=0.2), f"sacct never listed job {job}"

    def ended() -> bool:
        (status,) = provider.status([job])
        return status.terminal

    assert wait_for(ended, 60, period=1.0), provider.status([job])
    assert provider.status([job])[0].state == JobState.FAILED
    assert sacct_fields(job, "State", "ExitCode") == ["FAILED", "3:0"]


PMI1_READ = 1024
"""Bytes Slurm 22.05's pmi2 plugin reads of one PMI-1 line, in a single read: a longer line is cut in two."""


def test_srun_ranks_over_two_nodes_send_pmi_lines_slurm_reads_whole(slurm, tmp_path):
    """The nodes' MPI environment (.ci/slurm.sh's TaskProlog) keeps MPICH's PMI-1 lines far below Slurm's read.

    With PyPI MPICH's default netmod (UCX) the business card goes out in "put" lines of 600 to about 1080 bytes,
    depending on bytes that change from run to run; a line over 1024 bytes leaves every rank of the step waiting
    in MPI_Init.  Each rank logs what it sends to Slurm with ``PMI_DEBUG=1``.
    """
    from tests.executor.conftest import build
    from tests.slurm.multinode import HERE

    probe = build(HERE / "apps" / "node_probe.c", tmp_path / "node_probe")
    script = tmp_path / "pmi.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --job-name={JOB_PREFIX}pmi-lines --nodes 2 --exclusive --partition debug --time 2\n"
        f"#SBATCH --output {tmp_path}/pmi.out\n"
        'echo "netmod=${MPIR_CVAR_CH4_NETMOD:-}"\n'
        f"PMI_DEBUG=1 srun --nodes 2 --ntasks 4 --ntasks-per-node 2 {probe} 2>&1\n"
    )
    done = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, timeout=150)
    out = (tmp_path / "pmi.out").read_text()
    assert done.returncode == 0, (done.stderr, out[-3000:])
    assert "netmod=ofi\n" in out, out[:500]
    assert "size=4\n" in out and {node for _, node in ranks_of(out)} == {"n1", "n2"}, out[-3000:]
    puts = re.findall(r"pmi: (cmd=put .*)$", out, re.MULTILINE)
    assert puts, "the ranks logged no PMI-1 put (PMI_DEBUG)"
    longest = max(len(line) + 1 for line in puts)  # with its newline
    assert longest <= PMI1_READ // 2, f"a PMI-1 put line of {longest} bytes: near or over Slurm's {PMI1_READ}"
