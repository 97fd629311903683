"""GC-only mode on the real endpoint daemon configured from the ``slurm`` template, as a site user writes it.

``sim_specs.globus_compute_endpoint=<UUID>`` with ``GCOnlySpecs(template="slurm", user_endpoint_config=...)``:
the sims run in a Slurm job of the user endpoint the daemon starts for that config.  Every case here sends the
same config, so they share that user endpoint and its one-node block (started by the first case that runs).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import typing as t
import urllib.error
import uuid

import numpy as np
import pytest
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

from bundle import Ensemble, GCOnlySpecs
from bundle.endpoints.session import GCSession
from bundle.errors import TemplateOptionError
from bundle.gconly import EndpointUnavailableError, SystematicSimError
from bundle.gconly.journal import JOURNAL_FILE, load_journal
from bundle.gconly.resume import find_saved_history
from tests.realendpoint import remote
from tests.realendpoint.conftest import ROOT, RealEndpoint
from tests.realendpoint.resume_driver import PY_CONFIG
from tests.reliability import resume_helpers as rh

pytestmark = pytest.mark.timeout(600)

NODES = {"n1", "n2", "n3"}


@pytest.fixture
def clean_session(local_services: dict[str, str]) -> t.Iterator[None]:
    """The bundle's cached SDK executors are shut down after each test."""
    yield
    GCSession.clear(wait=True)


def _ensemble(
    endpoint: str,
    sim_f: t.Callable[..., t.Any],
    sim_max: int,
    *,
    user: dict[str, t.Any] | None = None,
    nworkers: int = 4,
    seed: int = 1,
    **gc: t.Any,
) -> Ensemble:
    """A GC-only ensemble of ``sim_max`` uniform points in [0, 1)^2 on the endpoint, ``GCOnlySpecs(**gc)``."""
    ensemble = Ensemble(
        libE_specs=LibeSpecs(nworkers=nworkers),
        sim_specs=SimSpecs(
            sim_f=sim_f,
            inputs=["x"],
            outputs=[("f", float), ("node", "U16")],
            globus_compute_endpoint=endpoint,
            user=user or {},
        ),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (2,))],
            user={"gen_batch_size": sim_max, "lb": np.zeros(2), "ub": np.ones(2)},
        ),
        exit_criteria=ExitCriteria(sim_max=sim_max),
        gc_specs=GCOnlySpecs(template="slurm", user_endpoint_config=dict(PY_CONFIG), result_timeout=300, **gc),
    )
    ensemble.add_random_streams(seed=seed)
    return ensemble


def _task_group(endpoint: RealEndpoint, group: uuid.UUID) -> list[str]:
    """The task ids the service holds for a task group."""
    return [task["id"] for task in endpoint.service.get(f"/v2/taskgroup/{group}")["tasks"]]


def test_gconly_ensemble_runs_its_sims_in_a_slurm_job_of_the_user_endpoint(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sim_max = 12
    group = uuid.uuid4()
    ensemble = _ensemble(slurm_endpoint.endpoint_id, remote.on_node, sim_max, sdk_options={"task_group_id": group})
    started = time.monotonic()
    H, _, flag = ensemble.run()
    print(f"GC-only, {sim_max} sims: {time.monotonic() - started:.1f} s")
    assert flag == 0 and ensemble.sim_errors == {}
    done = H[H["sim_ended"]]
    assert len(done) == sim_max
    np.testing.assert_array_equal(done["f"], done["x"][:, 0])
    nodes = set(done["node"].tolist())
    assert len(nodes) == 1 and nodes <= NODES, nodes  # the one node of the user endpoint's block
    assert len(_task_group(slurm_endpoint, group)) == sim_max  # one task per sim


def test_gconly_batches_travel_as_one_task_each(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sim_max, batch = 16, 4
    group = uuid.uuid4()
    ensemble = _ensemble(
        slurm_endpoint.endpoint_id,
        remote.on_node,
        sim_max,
        nworkers=8,
        batch_size=batch,
        sdk_options={"task_group_id": group},
    )
    started = time.monotonic()
    H, _, flag = ensemble.run()
    print(f"GC-only, {sim_max} sims in batches of {batch}: {time.monotonic() - started:.1f} s")
    assert flag == 0 and ensemble.sim_errors == {}
    done = H[H["sim_ended"]]
    assert len(done) == sim_max
    np.testing.assert_array_equal(done["f"], done["x"][:, 0])
    # Eight sims in flight, four to a task: the service received a quarter as many tasks as sims.
    assert len(_task_group(slurm_endpoint, group)) == sim_max // batch


def test_a_sim_that_raises_fails_alone_and_the_run_goes_on(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sim_max = 12
    ensemble = _ensemble(slurm_endpoint.endpoint_id, remote.on_node, sim_max, user={"fail_below": 0.3}, seed=3)
    H, _, flag = ensemble.run()
    assert flag == 0
    assert H["sim_ended"].sum() == sim_max
    low = H["x"][:, 0] < 0.3
    assert 0 < low.sum() < sim_max, "the seed must give points on both sides"
    assert set(ensemble.sim_errors) == set(H["sim_id"][low].tolist())
    for sim_id, text in ensemble.sim_errors.items():
        assert "ValueError: x0=" in text and "outside the model's range" in text, text
        assert (tmp_path / "gconly_sim_errors" / f"sim_{sim_id}.txt").is_file()
    assert np.isnan(H["f"][low]).all()
    np.testing.assert_array_equal(H["f"][~low], H["x"][~low, 0])


def test_sims_that_all_fail_alike_stop_the_run_early_quoting_the_cause(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ensemble = _ensemble(slurm_endpoint.endpoint_id, remote.needs_a_module, 40)
    started = time.monotonic()
    with pytest.raises(SystematicSimError) as stopped:
        ensemble.run()
    waited = time.monotonic() - started
    print(f"fail-fast after {waited:.1f} s: {stopped.value}")
    assert stopped.value.cause == "ModuleNotFoundError: No module named 'libe_gc_missing_solver'"
    assert "stopped early: the first 5" in str(stopped.value) and "install the package" in str(stopped.value)
    assert list(tmp_path.glob("libE_history_at_abort_*.npy")), "the history is saved before the run stops"
    assert waited < 120


def test_a_config_the_templates_schema_refuses_ends_the_run_within_seconds(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    refused = {**PY_CONFIG, "node_per_block": 2}  # misspelt: the template's schema allows no other keys
    group = uuid.uuid4()
    # With the template named, the run is refused before anything is sent.
    ensemble = _ensemble(slurm_endpoint.endpoint_id, remote.on_node, 8, sdk_options={"task_group_id": group})
    ensemble.gc_specs = dataclasses.replace(ensemble.gc_specs, user_endpoint_config=refused)
    started = time.monotonic()
    with pytest.raises(TemplateOptionError, match="node_per_block"):
        ensemble.run()
    named = time.monotonic() - started
    with pytest.raises(urllib.error.HTTPError, match="404"):
        slurm_endpoint.service.get(f"/v2/taskgroup/{group}")  # the service never heard of the run
    # Without it, the endpoint refuses to start a user endpoint: the run ends at the first answer, quoting it.
    ensemble = _ensemble(slurm_endpoint.endpoint_id, remote.on_node, 8)
    ensemble.gc_specs = dataclasses.replace(ensemble.gc_specs, template=None, user_endpoint_config=refused)
    started = time.monotonic()
    with pytest.raises(EndpointUnavailableError) as stopped:
        ensemble.run()
    by_endpoint = time.monotonic() - started
    print(f"refused config: template named {named * 1000:.0f} ms; by the endpoint {by_endpoint:.1f} s: {stopped.value}")
    message = str(stopped.value)
    assert "could not start a user endpoint for gc_specs.user_endpoint_config" in message
    assert "(ValidationError) Additional properties are not allowed ('node_per_block' was unexpected)" in message
    assert "History saved in" in message
    assert named < 1 and by_endpoint < 30


def _driver(endpoint: str, workdir: pathlib.Path, sim_max: int, *extra: str, out: str) -> subprocess.Popen[bytes]:
    """Start the calling script of the resume case (a process of its own, as a user runs it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    cmd = [sys.executable, "-m", "tests.realendpoint.resume_driver", endpoint, str(workdir), str(sim_max), *extra]
    with (workdir / out).open("wb") as fh:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _running_on_the_endpoint(workdir: pathlib.Path) -> set[int]:
    """Sims saved as started, not ended, whose tasks the service has accepted and not yet answered."""
    saved = find_saved_history(workdir)
    if saved is None:
        return set()
    try:
        H = np.load(saved)
    except (OSError, ValueError):  # being replaced by the next save
        return set()
    in_flight = {int(i) for i in H["sim_id"][H["sim_started"] & ~H["sim_ended"]]}
    tasks = load_journal(workdir / JOURNAL_FILE).tasks.values()
    return {i for task in tasks if task.task_id and not task.done for sims in task.sims for i in sims} & in_flight


def test_a_killed_driver_resumes_and_reattaches_its_tasks_through_the_task_group(
    slurm_endpoint: RealEndpoint, clean_session: None, tmp_path: pathlib.Path
) -> None:
    sim_max = 12
    first = _driver(slurm_endpoint.endpoint_id, tmp_path, sim_max, out="first.out")
    try:
        # Killed once the saved history has sims in flight whose tasks run on the endpoint.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None and not _running_on_the_endpoint(tmp_path):
            time.sleep(0.05)
        assert first.poll() is None, f"the driver ended before it was killed:\n{(tmp_path / 'first.out').read_text()}"
        assert _running_on_the_endpoint(tmp_path), "no saved sim ran on the endpoint within 300 s"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    saved_file = find_saved_history(tmp_path)
    assert saved_file is not None
    H_saved = np.load(saved_file)
    ended_saved = {int(i) for i in H_saved["sim_id"][H_saved["sim_ended"]]}
    in_flight = {int(i) for i in H_saved["sim_id"][H_saved["sim_started"] & ~H_saved["sim_ended"]]}
    journal = load_journal(tmp_path / JOURNAL_FILE)
    assert journal.task_group_id, "the journal names the task group the service gave the first run"
    started = time.monotonic()
    second = _driver(slurm_endpoint.endpoint_id, tmp_path, sim_max, "--resume", out="second.out")
    try:
        assert second.wait(300) == 0, (tmp_path / "second.out").read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    print(f"resume: {len(ended_saved)} saved, {len(in_flight)} in flight; rerun {time.monotonic() - started:.1f} s")
    second_out = (tmp_path / "second.out").read_text()
    assert "DONE flag=0" in second_out, second_out
    H = np.load(tmp_path / "final.npy")
    assert np.array_equal(H["sim_id"], np.arange(len(H))), "every sim_id exactly once"
    assert int(H["sim_ended"].sum()) == sim_max, "sim_max counts the whole run"
    np.testing.assert_array_equal(H["f"][H["sim_ended"]], H["x"][H["sim_ended"], 0])
    runs = collections.Counter(sim_id for sim_id, _, _ in rh.read_executions(tmp_path))
    assert all(runs[i] == 1 for i in ended_saved), "a sim saved as ended ran again"
    # The sims in flight at the kill whose tasks the service had accepted (the journal has their task ids) were
    # not sent again: the resumed run took their results through the task group (reload_tasks).
    sent = {i for task in journal.tasks.values() if task.task_id for sims in task.sims for i in sims} & in_flight
    assert sent, f"no sim of the saved history was in flight on the endpoint at the kill: {in_flight}"
    assert all(runs[i] == 1 for i in sent), {i: runs[i] for i in sent}
    line = re.search(r"resume: (\d+) in-flight sims reattached from task group ([0-9a-f-]{36})", second_out)
    assert line and int(line.group(1)) == len(sent) and line.group(2) == journal.task_group_id, second_out
