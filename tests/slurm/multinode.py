"""Shared pieces of the multi-node tests: the node probe app, reading where its ranks ran, node loss."""

from __future__ import annotations

import collections
import os
import pathlib
import re
import subprocess
import typing as t

import psutil

from tests.polling import wait_for

HERE = pathlib.Path(__file__).resolve().parent
SLURM_SH = HERE.parents[1] / ".ci" / "slurm.sh"
CLUSTER_LOCK = "/run/libe-gc-slurm.lock"
"""The lock ``.ci/slurm.sh`` holds while it changes the cluster (``up``, ``stop-node``, ``start-node``)."""
OPTIONS = {"partition": "debug", "walltime": "00:10:00", "network_interface": "lo"}
"""Template options of every multi-node test endpoint ("lo": every node of the test cluster is this machine)."""
START_TIMEOUT = 300.0
"""Seconds a block may take to start: on a cluster shared with other tests a multi-node job can queue."""


def cluster_nodes() -> list[str]:
    """The nodes of the ``debug`` partition."""
    out = subprocess.run(["sinfo", "-h", "-p", "debug", "-N", "-o", "%N"], capture_output=True, text=True, timeout=30)
    return sorted(set(out.stdout.split()))


def hosts_of(runline: str) -> list[str]:
    """The nodes a launch line names (``mpiexec -hosts`` or ``srun --nodelist``)."""
    match = re.search(r"(?:-hosts|--nodelist) (\S+)", runline)
    assert match, f"no hosts in the launch line {runline!r}"
    return match.group(1).split(",")


def ranks_of(stdout: str) -> list[tuple[int, str]]:
    """(rank, node) of every rank the node probe reported."""
    return [(int(r), node) for r, node in re.findall(r"^rank=(\d+) node=(\S+)$", stdout, re.MULTILINE)]


def check_placement(stdout: str, runline: str, app_line: str, nodes: int, per_node: int) -> list[str]:
    """Assert that the ranks ran ``per_node`` to a node on exactly the nodes the launch line names.

    Also that ``runline`` is the launcher line the ranks were started with plus the app line.
    Returns the nodes.
    """
    placed = ranks_of(stdout)
    assert f"size={nodes * per_node}\n" in stdout, stdout
    assert sorted(r for r, _ in placed) == list(range(nodes * per_node)), stdout
    hosts = hosts_of(runline)
    assert len(hosts) == nodes == len(set(hosts)), runline
    counts = collections.Counter(node for _, node in placed)
    assert counts == {h: per_node for h in hosts}, f"ranks landed on {dict(counts)}, the launch line names {hosts}"
    prefix = re.search(r"^prefix=(.*)$", stdout, re.MULTILINE)
    assert prefix, stdout
    assert runline == f"{' '.join(prefix.group(1).split())} {app_line}", (runline, prefix.group(1))
    return hosts


def node_state(node: str) -> str:
    """Slurm's state of ``node`` (``idle``, ``alloc``, ``down*``, ...)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%t"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "?"


def take_node_away(node: str) -> None:
    """Stop ``node``'s slurmd and mark the node down, as a node failure looks to Slurm."""
    subprocess.run(["bash", str(SLURM_SH), "stop-node", node], check=True, capture_output=True, timeout=60)


def bring_node_back(node: str, timeout: float = 90.0) -> None:
    """Start ``node``'s slurmd again and resume it; wait until Slurm shows it idle."""
    from bundle.endpoints.local.reaper import TOKEN_ENV

    # The slurmd it starts outlives this process: no pipes, and not marked as one of this process's engines'
    # (the bundle's watcher stops every process carrying its token when the engines shut down).
    subprocess.run(
        ["bash", str(SLURM_SH), "start-node", node],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout + 30,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != TOKEN_ENV},
    )
    wait_for(lambda: node_state(node) in ("idle", "alloc", "mix"), timeout, period=1.0)
    assert node_state(node) in ("idle", "alloc", "mix"), f"node {node} did not come back: {node_state(node)}"


def _command_lines() -> t.Iterator[tuple[psutil.Process, str]]:
    """Every live process with its command line."""
    for proc in psutil.process_iter(["cmdline"]):
        yield proc, " ".join(proc.info["cmdline"] or [])


def lock_holders(path: str) -> list[str]:
    """Command lines of live processes other than ``.ci/slurm.sh`` itself that have ``path`` open."""
    holders = []
    for proc, cmd in _command_lines():
        if "slurm.sh" in cmd:
            continue
        try:
            if any(f.path == path for f in proc.open_files()):
                holders.append(f"{proc.pid}: {cmd}")
        except psutil.Error:
            continue
    return holders


def processes_with(needle: str) -> list[str]:
    """Command lines of live processes whose command line contains ``needle``."""
    return [f"{proc.pid}: {cmd}" for proc, cmd in _command_lines() if needle in cmd]


def job_nodes(job_id: str) -> list[str]:
    """The nodes of a running job."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True, timeout=30)
    nodelist = out.stdout.strip()
    if not nodelist:
        return []
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
    return hosts.stdout.split()
