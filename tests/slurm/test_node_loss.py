"""Node loss: one node of a running 2-node block is taken away, in executor and GC-only mode.

``.ci/slurm.sh stop-node`` does to a node of the test cluster what a node failure does: Slurm marks
it down and ends the jobs on it (``NODE_FAIL``, which ``sacct`` reports, as at the centers), and the
node's slurmd and job steps are gone.  The endpoint is built from the ``slurm`` template and has
nothing of its own for lost blocks: what keeps it serving is in the template
(``block_error_handler: false``, heartbeats, ``max_retries_on_system_failure``), so a site endpoint
started from it does the same.  Cases run with the template's heartbeat defaults (Parsl's,
30 s / 120 s) and with short ones (2 s / 10 s); ``LIBE_GC_NODE_LOSS_CASES`` says which
(:data:`CASES_ENV`):

* the tasks on the lost block fail once the interchange has missed the block's heartbeats for
  ``heartbeat_threshold`` seconds, with a :class:`~bundle.errors.BlockLostError` naming the lost
  worker pool, which is a pool of the lost block; with ``max_retries_on_system_failure`` they run
  again instead, once;
* the ensemble goes on: later sims complete on a new block, which does not hold the lost node while
  it is down (where their ranks ran is read from ``$SLURMD_NODENAME``).

The endpoint under test is the ``endpoint_under_test`` fixture (see ``endpoint_under_test.py``): by default
the endpoint daemon a site runs (``globus-compute-endpoint start`` on what ``libe-gc endpoint configure
--template slurm`` made, tasks through the SDK, the stand-in web service and RabbitMQ); the local endpoint
rendering the same template with ``LIBE_GC_NODE_LOSS_ENDPOINTS=local`` (or ``local,real``).  The
node is brought back (idle) after each test, also when it fails, since the cluster is shared.
Figures (time to FAILED, sims lost or repeated) are printed as ``FIGURES {json}`` lines.
"""

from __future__ import annotations

import collections
import math
import os
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
from bundle.endpoints.session import GCSession
from bundle.endpoints.templates import get_template
from tests.ensembles import executor_libe_specs
from tests.gconly.helpers import REPO, run_with, uniform_specs
from tests.gcservice import SDK_SOCKET_WARNINGS
from tests.polling import wait_for
from tests.reliability.fault_helpers import record
from tests.slurm import node_sims
from tests.slurm.endpoint_under_test import (
    EndpointUnderTest,
    LocalSlurmEndpoint,
    RealSlurmEndpoint,
    accounting_answers,
    block_jobs,
    block_of_job,
    block_of_manager,
    job_started,
    lost_manager,
    wait_no_block_jobs,
)
from tests.slurm.multinode import (
    HERE,
    OPTIONS,
    START_TIMEOUT,
    bring_node_back,
    cluster_nodes,
    job_nodes,
    node_state,
    processes_with,
    ranks_of,
    take_node_away,
)

# A lost node's replacement block may queue behind other jobs on a shared cluster.  The SDK leaves its
# result watchers' wake-up sockets to the garbage collector (see tests/realendpoint/conftest.py).
pytestmark = [pytest.mark.timeout(900), *(pytest.mark.filterwarnings(spec) for spec in SDK_SOCKET_WARNINGS)]

HEARTBEATS: dict[str, dict[str, int]] = {"defaults": {}, "short": {"heartbeat_period": 2, "heartbeat_threshold": 10}}
"""Template options of the two settings: the template's defaults, and heartbeats set short."""

USABLE = ("idle", "alloc", "mix")


def heartbeat(setting: str) -> tuple[int, int]:
    """(heartbeat_period, heartbeat_threshold) an endpoint gets from the template with ``setting``."""
    config, _ = get_template("slurm").load_offline({**OPTIONS, **HEARTBEATS[setting]})
    executor = config.engine.executor
    try:
        return int(executor.heartbeat_period), int(executor.heartbeat_threshold)
    finally:
        config.engine.shutdown()


@pytest.fixture(scope="module")
def node_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    from tests.executor.conftest import build

    return build(HERE / "apps" / "node_probe.c", tmp_path_factory.mktemp("apps") / "node_probe")


ENDPOINTS_ENV = "LIBE_GC_NODE_LOSS_ENDPOINTS"
"""Which endpoints the node-loss cases run on, comma-separated: ``real`` (default: the endpoint daemon a site
runs, configured from the ``slurm`` template and reached through the SDK) and/or ``local`` (the local endpoint
rendering the same template in this process)."""


def _endpoints() -> list[str]:
    chosen = [name.strip() for name in os.environ.get(ENDPOINTS_ENV, "real").split(",") if name.strip()]
    unknown = sorted(set(chosen) - {"real", "local"})
    if unknown or not chosen:
        raise ValueError(f"{ENDPOINTS_ENV} must list 'real' and/or 'local', got {os.environ.get(ENDPOINTS_ENV)!r}")
    return chosen


@pytest.fixture(params=_endpoints())
def endpoint_under_test(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, slurm: None
) -> t.Iterator[EndpointUnderTest]:
    """The endpoint the test runs on, built from the ``slurm`` template; stopped afterwards.

    ``real``: a daemon of this test's own (``libe-gc endpoint configure`` then ``globus-compute-endpoint start``,
    see ``tests/realendpoint/conftest.py``), so that no other test's user endpoint holds nodes.
    """
    # Without accounting Parsl reads job states with squeue, not as at the centers (see .ci/slurm.sh).
    assert accounting_answers(), "Slurm accounting does not answer (sacct -X): run .ci/slurm.sh up"
    if request.param == "local":
        ep: EndpointUnderTest = LocalSlurmEndpoint(tmp_path / "engine", START_TIMEOUT)
        try:
            yield ep
        finally:
            ep.stop()
    else:
        from tests.realendpoint.conftest import SLURM_SITE, endpoint_from_template

        service = request.getfixturevalue("gc_service")
        request.getfixturevalue("local_services")  # this test's SDK reaches the stand-in service
        with endpoint_from_template(
            service, tmp_path / "site", "libe-gc-node-loss", "slurm", SLURM_SITE, multinode_blocks=True
        ) as real:
            ep = RealSlurmEndpoint(real)
            try:
                yield ep
            finally:
                GCSession.clear(wait=True)
    assert accounting_answers(), "Slurm accounting stopped answering during the test: the cluster was reconfigured"


class NodeTaker(threading.Thread):
    """Once ``ready()`` holds, take away the last node of the endpoint's one running block job.

    Then watch the node until :meth:`finish`: ``back_at`` is when it was seen usable again (another
    session's ``.ci/slurm.sh up`` may resume it), ``None`` while it stays down.
    """

    def __init__(
        self, ep: EndpointUnderTest, ready: t.Callable[[], bool], before: t.Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(name="node-taker", daemon=True)
        self.ep = ep
        self.ready = ready
        self.before = before
        self.node: str | None = None
        self.job: str | None = None
        self.job_nodes: list[str] = []
        self.taken_at: float | None = None
        self.back_at: float | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            if not wait_for(self.ready, START_TIMEOUT + 120, period=0.2):
                raise TimeoutError("the condition to take a node away never held")
            running = [job for job, state in block_jobs(self.ep) if state == "RUNNING"]
            assert len(running) == 1, f"expected one running block job, found {block_jobs(self.ep)}"
            self.job = running[0]
            self.job_nodes = job_nodes(self.job)
            assert len(self.job_nodes) == 2, self.job_nodes
            self.node = self.job_nodes[-1]  # not the batch host: the worker pool dies with the job, not the node
            self.before()
            self.taken_at = time.time()
            take_node_away(self.node)
            while not self._done.wait(0.5):
                if node_state(self.node) in USABLE:
                    self.back_at = time.time()
                    break
        except BaseException as err:
            self.error = err

    def finish(self) -> None:
        """Stop watching the node; raise what went wrong taking it."""
        self._done.set()
        self.join(30)
        assert self.error is None and self.taken_at is not None, self.error


@pytest.fixture
def taker_cleanup(slurm: None) -> t.Iterator[list[NodeTaker]]:
    """Bring every node a test took away back, idle, whatever happened."""
    takers: list[NodeTaker] = []
    nodes = cluster_nodes()
    assert len(nodes) >= 3, f"node loss needs a partition of 3 nodes (.ci/slurm.sh up), found {nodes}"
    try:
        yield takers
    finally:
        for taker in takers:
            taker._done.set()
            taker.join(30)
            if taker.node is not None:
                bring_node_back(taker.node)
        for taker in takers:
            if taker.node is not None:
                assert node_state(taker.node) in USABLE, f"{taker.node}: {node_state(taker.node)}"


def _leftovers(needle: str) -> list[str]:
    """Processes whose command line holds ``needle``, once they had 30 s to end."""
    return [] if wait_for(lambda: not processes_with(needle), 30, period=0.2) else processes_with(needle)


def assert_lost_node_avoided(taker: NodeTaker, placements: list[tuple[str, set[str]]]) -> bool:
    """Check that sims placed after the loss, ``(block job, nodes their ranks ran on)``, avoided the lost node.

    A block job may hold the lost node only if it started after the node was back.  Returns whether the
    node stayed down for the whole run (then no sim may have run on it at all).
    """
    assert taker.node is not None
    for job, nodes in placements:
        assert job != taker.job, f"a sim ran on the lost block job {job} after the loss"
        if taker.node in nodes:
            assert taker.back_at is not None, f"block job {job} ran ranks on {taker.node} while it was down"
            assert job_started(job) >= math.floor(taker.back_at), (
                f"block job {job} started on {taker.node} before the node was back"
            )
    return taker.back_at is None


def assert_names_the_lost_block(ep: EndpointUnderTest, error: str, job: str) -> str:
    """Check that ``error`` names a worker pool (manager) of block job ``job``; return the manager id."""
    assert "block (worker pool) it ran on was lost" in error, error
    manager, _host = lost_manager(error)
    assert block_of_manager(ep, manager) == block_of_job(job), f"{manager} is not a pool of block job {job}"
    return manager


CASES_ENV = "LIBE_GC_NODE_LOSS_CASES"
"""``all`` runs every mode x setting x retries case.  By default (CI) each mode runs two cases, so
that each outcome (the task fails; it runs again) and each setting is seen in each mode: an MPI
task that fails with the template's defaults (2.5 to 3 min) and runs again with short heartbeats
(about 1.5 min); GC-only sims that fail with short heartbeats and run again with two retries with
the defaults (the case the default heartbeat period makes harder: sibling pools expire up to
30 s apart)."""


def _cases(every: list[tuple[str, int]], ci: list[tuple[str, int]]) -> list[tuple[str, int]]:
    chosen = os.environ.get(CASES_ENV, "ci")
    if chosen not in ("ci", "all"):
        raise ValueError(f"{CASES_ENV} must be 'ci' or 'all', got {chosen!r}")
    return [case for case in every if chosen == "all" or case in ci]


EXECUTOR_CASES = _cases([("short", 0), ("short", 1), ("defaults", 0), ("defaults", 1)], [("short", 1), ("defaults", 0)])


@pytest.mark.parametrize(("setting", "retries"), EXECUTOR_CASES)
def test_executor_task_on_a_lost_node(
    node_probe, tmp_path, monkeypatch, endpoint_under_test, taker_cleanup, setting, retries
):
    ep = endpoint_under_test
    period, threshold = heartbeat(setting)
    monkeypatch.chdir(tmp_path)
    config = {
        **OPTIONS,
        **HEARTBEATS[setting],
        "mpi_launcher": "mpiexec",
        "nodes_per_block": 2,
        "max_workers_per_block": 1,
        "max_retries_on_system_failure": retries,
    }
    exctr = ep.executor(config)
    exctr.register_app(str(node_probe), app_name="probe")
    marks = tmp_path / "marks"
    marks.mkdir()
    flag = tmp_path / "node-taken"
    sim_max = 3
    H0 = np.zeros(sim_max, dtype=[("sim_id", int), ("nodes", int), ("sleep", float), ("sim_started", bool)])
    H0["sim_id"] = np.arange(sim_max)
    H0["nodes"] = 2
    # sim 0 is running when its node goes (its ranks are stopped with the block); a rerun does not sleep (--unless)
    H0["sleep"] = [threshold + 300, 0.5, 0.5]
    taker = NodeTaker(ep, lambda: (marks / "sim0").exists(), before=flag.touch)
    taker_cleanup.append(taker)
    taker.start()
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(1, tmp_path / "ensemble"),
        sim_specs=SimSpecs(
            sim_f=node_sims.span_task,
            inputs=["sim_id", "nodes", "sleep"],
            outputs=[("state", "U20"), ("runline", "U300"), ("stdout", "U1000"), ("error", "U600"), ("ended", float)],
            user={"mark_dir": str(marks), "unless": str(flag), "wait": threshold + 240},
        ),
        exit_criteria=ExitCriteria(sim_max=sim_max, wallclock_max=threshold + 600),
        H0=H0,
    )
    t0 = time.monotonic()
    H, _, flag_code = ens.run()
    elapsed = time.monotonic() - t0
    taker.finish()
    assert taker.taken_at is not None and taker.job is not None and taker.node is not None
    assert flag_code == 0
    done = H[H["sim_ended"]]
    assert len(done) == sim_max, "the ensemble must go on after the node loss"
    victim = done[done["sim_id"] == 0][0]
    starts = (marks / "sim0").read_text().splitlines()
    placements = []
    for row in done[done["state"] == "FINISHED"]:
        job = re.search(r"^job=(\S+)$", str(row["stdout"]), re.MULTILINE)
        assert job, row["stdout"]
        placed = {node for _, node in ranks_of(str(row["stdout"]))}
        assert len(placed) == 2, placed
        placements.append((job.group(1), placed))
    for row in done[done["sim_id"] > 0]:
        assert row["state"] == "FINISHED", row["error"]
    stayed_down = assert_lost_node_avoided(taker, placements)
    if retries == 0:
        assert victim["state"] == "FAILED", victim
        manager = assert_names_the_lost_block(ep, str(victim["error"]), taker.job)
        to_failed = float(victim["ended"]) - taker.taken_at
        rerun_after = None
        # The interchange gives up after heartbeat_threshold seconds without a heartbeat; the last one
        # came at most heartbeat_period seconds before the loss.
        assert threshold - period - 5 <= to_failed <= threshold + 60, f"the task took {to_failed:.1f} s to fail"
        assert starts == [f"start node={taker.job_nodes[0]}"], starts
    else:
        assert victim["state"] == "FINISHED", victim["error"]
        assert len(starts) == 2, f"the lost sim must run again once: {starts}"
        manager = None
        to_failed = None
        rerun_after = (marks / "sim0").stat().st_mtime - taker.taken_at
        assert rerun_after >= threshold - period - 5, f"rerun after {rerun_after:.1f} s"
    # Nothing of the lost block is left: no rank, no launcher, no pool, no job.
    assert _leftovers(str(node_probe)) == []
    ep.stop()
    assert wait_no_block_jobs(ep) == []
    assert _leftovers(str(ep.run_dir)) == [], "worker pools or interchange of the run left behind"
    record(
        f"node_loss_executor_{setting}_retries{retries}",
        endpoint=ep.name,
        sims=sim_max,
        lost_node=taker.node,
        lost_job=taker.job,
        lost_manager=manager,
        later_sims_nodes=sorted(set().union(*(nodes for _, nodes in placements))),
        lost_node_stayed_down=stayed_down,
        failed_sims=[int(i) for i in done["sim_id"][done["state"] != "FINISHED"]],
        repeated_sims=[0] if len(starts) > 1 else [],
        time_to_failed_s=None if to_failed is None else round(to_failed, 1),
        rerun_started_after_s=None if rerun_after is None else round(rerun_after, 1),
        heartbeat_period_s=period,
        heartbeat_threshold_s=threshold,
        run_s=round(elapsed, 1),
    )


# Two retries: a block's worker pools die together, and a task retried after the loss of one pool can be
# sent to a sibling pool of the same block before the interchange has noticed that one is gone too.
GCONLY_CASES = _cases([("short", 0), ("short", 2), ("defaults", 0), ("defaults", 2)], [("short", 0), ("defaults", 2)])


@pytest.mark.parametrize(("setting", "retries"), GCONLY_CASES)
def test_gconly_sims_on_a_lost_node(tmp_path, monkeypatch, endpoint_under_test, taker_cleanup, setting, retries):
    ep = endpoint_under_test
    period, threshold = heartbeat(setting)
    monkeypatch.chdir(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    config = {
        **OPTIONS,
        **HEARTBEATS[setting],
        "engine_type": "GlobusComputeEngine",
        "nodes_per_block": 2,
        "max_workers_per_node": 1,
        "max_retries_on_system_failure": retries,
        "worker_init": f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
    }
    nworkers, sim_max = 2, 6
    specs = uniform_specs(node_sims.where, nworkers, sim_max, endpoint=ep.endpoint)
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
    taker = NodeTaker(ep, lambda: len({node for _, node, _ in starts()}) >= 2)
    taker_cleanup.append(taker)
    taker.start()
    t0 = time.monotonic()
    H, _, flag = run_with(
        bundle.libE, specs, {"nworkers": nworkers, "workflow_dir_path": str(tmp_path)}, gc_specs=ep.gc_specs(config)
    )
    elapsed = time.monotonic() - t0
    taker.finish()
    assert taker.taken_at is not None and taker.job is not None and taker.node is not None
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
    placements = [(job, {node}) for _, node, job in seen if job != taker.job]
    assert all(job not in ("-", taker.job) for job, _ in placements), placements
    stayed_down = assert_lost_node_avoided(taker, placements)
    managers = []
    if retries == 0:
        # Failed: sims that ran on the lost block, or were sent to it and lost before they started.
        elsewhere = sorted({sim for sim, _, job in seen if sim in failed and job != taker.job})
        assert failed and set(on_lost_block) & set(failed) and not elsewhere, (failed, on_lost_block, seen)
        assert not repeated
        error_files = sorted((tmp_path / "gconly_sim_errors").glob("sim_*.txt"))
        assert len(error_files) == len(failed)
        for path in error_files:
            text = path.read_text()
            assert "BlockLostError" in text, text
            managers.append(assert_names_the_lost_block(ep, text, taker.job))
        to_failed = min(f.stat().st_mtime for f in error_files) - taker.taken_at
        assert threshold - period - 5 <= to_failed <= threshold + 60, f"the sims took {to_failed:.1f} s to fail"
    else:
        assert not failed and np.allclose(done["f"], done["x"][:, 0])
        assert repeated and set(repeated) <= set(on_lost_block), (repeated, on_lost_block)
        to_failed = None
    ep.stop()
    assert wait_no_block_jobs(ep) == []
    assert _leftovers(str(ep.run_dir)) == [], "worker pools or interchange of the run left behind"
    record(
        f"node_loss_gconly_{setting}_retries{retries}",
        endpoint=ep.name,
        sims=sim_max,
        lost_node=taker.node,
        lost_job=taker.job,
        lost_managers=sorted(set(managers)),
        later_sims_nodes=sorted({node for _, nodes in placements for node in nodes}),
        lost_node_stayed_down=stayed_down,
        failed_sims=failed,
        repeated_sims=repeated,
        time_to_failed_s=None if to_failed is None else round(to_failed, 1),
        heartbeat_period_s=period,
        heartbeat_threshold_s=threshold,
        run_s=round(elapsed, 1),
    )
