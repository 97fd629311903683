"""Node loss: one node of a running 2-node block is taken away, in executor and GC-only mode.

``.ci/slurm.sh stop-node`` does to a node of the test cluster what a node failure does: Slurm marks
it down and ends the jobs on it (``NODE_FAIL``), and the node's slurmd and job steps are gone.  The
tasks on the block fail with a :class:`~bundle.errors.BlockLostError` naming the job and the node
once the interchange has missed the block's heartbeats for ``heartbeat_threshold`` seconds (or rerun
on a new block with ``max_retries_on_system_failure``); the ensemble goes on on the nodes left.
The node is brought back (idle) after each test, also when it fails, since the cluster is shared.
Figures (time to FAILED, sims lost or repeated) are printed as ``FIGURES {json}`` lines.
"""

from __future__ import annotations

import collections
import pathlib
import re
import threading
import time
import typing as t

import numpy as np
import pytest
from libensemble import Ensemble
from libensemble.specs import ExitCriteria, SimSpecs

import bundle
from bundle import GlobusComputeExecutor
from bundle.endpoints.session import GCSession
from tests.ensembles import executor_libe_specs
from tests.gconly.helpers import REPO, run_with, uniform_specs
from tests.polling import wait_for
from tests.reliability.fault_helpers import record
from tests.slurm import node_sims
from tests.slurm.conftest import our_jobs, wait_no_jobs
from tests.slurm.multinode import (
    CLUSTER_LOCK,
    HERE,
    OPTIONS,
    START_TIMEOUT,
    bring_node_back,
    cluster_nodes,
    job_nodes,
    lock_holders,
    node_state,
    processes_with,
    ranks_of,
    take_node_away,
)

# A lost node's replacement block may queue behind other jobs on a shared cluster.
pytestmark = pytest.mark.timeout(900)

HEARTBEAT = {"heartbeat_period": 2, "heartbeat_threshold": 10}
"""A block's loss is noticed within heartbeat_threshold seconds (Parsl's defaults, 30 s / 120 s, are slower)."""


@pytest.fixture(scope="module")
def node_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE / "apps" / "node_probe.c", tmp_path_factory.mktemp("apps") / "node_probe")


def test_no_daemon_holds_the_cluster_lock(slurm):
    """A daemon ``.ci/slurm.sh up`` started must not inherit its lock, or every ``stop-node`` waits for it."""
    assert lock_holders(CLUSTER_LOCK) == [], f"processes holding {CLUSTER_LOCK}: the next stop-node would wait"


class NodeTaker(threading.Thread):
    """Once ``ready()`` holds, take away the last node of this session's one running block job."""

    def __init__(self, ready: t.Callable[[], bool], before: t.Callable[[], None] = lambda: None) -> None:
        super().__init__(name="node-taker", daemon=True)
        self.ready = ready
        self.before = before
        self.node: str | None = None
        self.job: str | None = None
        self.job_nodes: list[str] = []
        self.taken_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if not wait_for(self.ready, START_TIMEOUT + 120, period=0.2):
                raise TimeoutError("the condition to take a node away never held")
            running = [job for job, _, state in our_jobs() if state == "RUNNING"]
            assert len(running) == 1, f"expected one running block job, found {our_jobs()}"
            self.job = running[0]
            self.job_nodes = job_nodes(self.job)
            assert len(self.job_nodes) == 2, self.job_nodes
            self.node = self.job_nodes[-1]  # not the batch host: the worker pool dies with the job, not the node
            self.before()
            self.taken_at = time.time()
            take_node_away(self.node)
        except BaseException as err:
            self.error = err


@pytest.fixture
def taker_cleanup(slurm: None) -> t.Iterator[list[NodeTaker]]:
    """Bring every node a test took away back, idle, whatever happened."""
    takers: list[NodeTaker] = []
    nodes = cluster_nodes()
    assert len(nodes) >= 3, f"node loss needs a partition of 3 nodes (.ci/slurm.sh up), found {nodes}"
    try:
        yield takers
    finally:
        GCSession.clear()
        for taker in takers:
            taker.join(30)
            if taker.node is not None:
                bring_node_back(taker.node)
        for taker in takers:
            if taker.node is not None:
                assert node_state(taker.node) in ("idle", "alloc", "mix"), f"{taker.node}: {node_state(taker.node)}"


def _leftovers(needle: str) -> list[str]:
    """Processes whose command line holds ``needle``, once they had 30 s to end."""
    return [] if wait_for(lambda: not processes_with(needle), 30, period=0.2) else processes_with(needle)


@pytest.mark.parametrize("retries", [0, 1])
def test_executor_task_on_a_lost_node(node_probe, tmp_path, monkeypatch, taker_cleanup, retries):
    monkeypatch.chdir(tmp_path)
    config = {
        **OPTIONS,
        **HEARTBEAT,
        "mpi_launcher": "mpiexec",
        "nodes_per_block": 2,
        "max_workers_per_block": 1,
        "max_retries_on_system_failure": retries,
    }
    exctr = GlobusComputeExecutor(
        "local:slurm",
        user_endpoint_config=config,
        local_options={"run_dir": tmp_path / "engine", "start_timeout": START_TIMEOUT},
    )
    exctr.register_app(str(node_probe), app_name="probe")
    marks = tmp_path / "marks"
    marks.mkdir()
    flag = tmp_path / "node-taken"
    sim_max = 3
    H0 = np.zeros(sim_max, dtype=[("sim_id", int), ("nodes", int), ("sleep", float), ("sim_started", bool)])
    H0["sim_id"] = np.arange(sim_max)
    H0["nodes"] = 2
    H0["sleep"] = [60.0, 0.5, 0.5]  # sim 0 is running when its node goes; a rerun does not sleep (--unless)
    taker = NodeTaker(lambda: (marks / "sim0").exists(), before=flag.touch)
    taker_cleanup.append(taker)
    taker.start()
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(1, tmp_path / "ensemble"),
        sim_specs=SimSpecs(
            sim_f=node_sims.span_task,
            inputs=["sim_id", "nodes", "sleep"],
            outputs=[("state", "U20"), ("runline", "U300"), ("stdout", "U1000"), ("error", "U600"), ("ended", float)],
            user={"mark_dir": str(marks), "unless": str(flag), "wait": 240},
        ),
        exit_criteria=ExitCriteria(sim_max=sim_max, wallclock_max=420),
        H0=H0,
    )
    t0 = time.monotonic()
    H, _, flag_code = ens.run()
    elapsed = time.monotonic() - t0
    taker.join(30)
    assert taker.error is None and taker.taken_at is not None, taker.error
    lost = taker.node
    assert flag_code == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max, "the ensemble must go on after the node loss"
    victim = done[done["sim_id"] == 0][0]
    starts = (marks / "sim0").read_text().splitlines()
    later = done[done["sim_id"] > 0]
    later_nodes = set()
    for row in later:
        assert row["state"] == "FINISHED", row["error"]
        placed = {node for _, node in ranks_of(str(row["stdout"]))}
        assert len(placed) == 2, placed
        later_nodes |= placed
        # On a new block (the shared cluster may have resumed the lost node meanwhile, so it can be in it).
        job = re.search(r"^job=(\S+)$", str(row["stdout"]), re.MULTILINE)
        assert job and job.group(1) != taker.job, "later sims run on a new block"
    if retries == 0:
        assert victim["state"] == "FAILED", victim
        error = str(victim["error"])
        assert "block (worker pool) it ran on was lost" in error, error
        assert f"block job {taker.job}" in error and "NODE_FAIL" in error and lost in error, error
        to_failed = float(victim["ended"]) - taker.taken_at
        rerun_after = None
        assert to_failed < 60, f"the task took {to_failed:.1f} s to fail"
        assert starts == [f"start node={taker.job_nodes[0]}"], starts
    else:
        assert victim["state"] == "FINISHED", victim["error"]
        assert len(starts) == 2, f"the lost sim must run again once: {starts}"
        rerun_job = re.search(r"^job=(\S+)$", str(victim["stdout"]), re.MULTILINE)
        assert rerun_job and rerun_job.group(1) != taker.job, "the lost sim reruns on a new block"
        to_failed = None
        rerun_after = (marks / "sim0").stat().st_mtime - taker.taken_at
    # Nothing of the lost block is left: no rank, no launcher, no pool, no job.
    assert _leftovers(str(node_probe)) == []
    GCSession.clear()
    assert wait_no_jobs() == []
    assert _leftovers(str(tmp_path / "engine")) == [], "worker pools or interchange of the run left behind"
    record(
        f"node_loss_executor_retries{retries}",
        sims=sim_max,
        lost_node=lost,
        lost_job=taker.job,
        later_sims_nodes=sorted(later_nodes),
        failed_sims=[int(i) for i in done["sim_id"][done["state"] != "FINISHED"]],
        repeated_sims=[0] if len(starts) > 1 else [],
        time_to_failed_s=None if to_failed is None else round(to_failed, 1),
        rerun_started_after_s=None if rerun_after is None else round(rerun_after, 1),
        heartbeat_threshold_s=HEARTBEAT["heartbeat_threshold"],
        run_s=round(elapsed, 1),
    )


# Two retries: a block's worker pools die together, and a task retried after the loss of one pool can be
# sent to a sibling pool of the same block before the interchange has noticed that one is gone too.
@pytest.mark.parametrize("retries", [0, 2])
def test_gconly_sims_on_a_lost_node(tmp_path, monkeypatch, taker_cleanup, retries):
    monkeypatch.chdir(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    config = {
        **OPTIONS,
        **HEARTBEAT,
        "engine_type": "GlobusComputeEngine",
        "nodes_per_block": 2,
        "max_workers_per_node": 1,
        "max_retries_on_system_failure": retries,
        "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
    }
    nworkers, sim_max = 2, 6
    specs = uniform_specs(node_sims.where, nworkers, sim_max, endpoint="local:slurm")
    specs["sim_specs"]["in"] = ["x", "sim_id"]
    specs["sim_specs"]["out"] = [("f", float), ("node", "U16"), ("job", "U16")]
    specs["sim_specs"]["user"] = {"sleep": 4.0, "mark_dir": str(marks)}

    def starts() -> list[tuple[int, str, str]]:
        """(sim id, node, block job) of every start of a sim."""
        found = []
        for p in marks.glob("start-*"):
            _, sim, node, job, *_ = p.name.split("-")
            found.append((int(sim), node, job))
        return found

    # Take a node away once a sim has started on each of the block's two nodes.
    taker = NodeTaker(lambda: len({node for _, node, _ in starts()}) >= 2)
    taker_cleanup.append(taker)
    taker.start()
    t0 = time.monotonic()
    H, _, flag = run_with(
        bundle.libE,
        specs,
        {"nworkers": nworkers, "workflow_dir_path": str(tmp_path)},
        gc_specs={
            "user_endpoint_config": config,
            "local_options": {"run_dir": tmp_path / "engine", "start_timeout": START_TIMEOUT},
        },
    )
    elapsed = time.monotonic() - t0
    taker.join(30)
    assert taker.error is None and taker.taken_at is not None, taker.error
    lost = taker.node
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max and len(np.unique(done["sim_id"])) == sim_max
    seen = starts()
    per_sim = collections.Counter(sim for sim, _, _ in seen)
    # The sims that ran on the lost block: running when the node went, or sent to its other pool before
    # the interchange noticed that one gone too.
    on_lost_block = sorted({sim for sim, _, job in seen if job == taker.job})
    failed = sorted(int(i) for i in done["sim_id"][np.isnan(done["f"])])
    repeated = sorted(sim for sim, n in per_sim.items() if n > 1)
    after = [row for row in done if int(row["sim_id"]) not in failed and int(row["sim_id"]) not in on_lost_block]
    assert after, "sims must complete after the node loss"
    # ... on a new block (the shared cluster may have resumed the lost node meanwhile, so it can be in it).
    assert all(str(row["job"]) not in ("-", taker.job) for row in after), [
        (int(r["sim_id"]), str(r["job"])) for r in after
    ]
    if retries == 0:
        # Failed: sims that ran on the lost block, or were sent to it and lost before they started.
        elsewhere = sorted({sim for sim, _, job in seen if sim in failed and job != taker.job})
        assert failed and set(on_lost_block) & set(failed) and not elsewhere, (failed, on_lost_block, seen)
        assert not repeated
        error_files = sorted((tmp_path / "gconly_sim_errors").glob("sim_*.txt"))
        assert len(error_files) == len(failed)
        texts = [f.read_text() for f in error_files]
        for text in texts:
            assert "BlockLostError" in text and "block (worker pool) it ran on was lost" in text, text
            assert "NODE_FAIL" in text and lost in text, text
        to_failed = min(f.stat().st_mtime for f in error_files) - taker.taken_at
        assert to_failed < 60, f"the sims took {to_failed:.1f} s to fail"
    else:
        assert not failed and np.allclose(done["f"], done["x"][:, 0])
        assert repeated and set(repeated) <= set(on_lost_block), (repeated, on_lost_block)
        to_failed = None
    GCSession.clear()
    assert wait_no_jobs() == []
    assert _leftovers(str(tmp_path / "engine")) == [], "worker pools or interchange of the run left behind"
    record(
        f"node_loss_gconly_retries{retries}",
        sims=sim_max,
        lost_node=lost,
        lost_job=taker.job,
        later_sims_nodes=sorted({str(row["node"]) for row in after}),
        failed_sims=failed,
        repeated_sims=repeated,
        time_to_failed_s=None if to_failed is None else round(to_failed, 1),
        heartbeat_threshold_s=HEARTBEAT["heartbeat_threshold"],
        run_s=round(elapsed, 1),
    )
