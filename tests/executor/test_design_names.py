"""The names of libEnsemble's Globus Compute design, with the same meaning here.

``DESIGN_USER_FLOW`` is the "User flow" block of that design as written there (its line breaks and
indentation restored; the design's text lost them).  It runs verbatim except for its import line,
with its two ``"..."`` placeholders filled in: the endpoint (``"local"``) and the ``app_args`` string.
"""

from __future__ import annotations

import textwrap
import time
import typing as t

import numpy as np
import pytest
from libensemble import Ensemble
from libensemble.alloc_funcs.give_sim_work_first import give_sim_work_first
from libensemble.executors.executor import Executor, ExecutorException
from libensemble.gen_funcs.sampling import uniform_random_sample
from libensemble.message_numbers import UNSET_TAG
from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs
from libensemble.tools import add_unique_random_streams

import bundle
from bundle.endpoints.session import GCSession
from tests.executor.design_flow import my_remote_func

DESIGN_USER_FLOW = textwrap.dedent(
    """
    from libensemble.executors.globus_compute_executor import GlobusComputeExecutor
    exctr = GlobusComputeExecutor(endpoint_id="...")
    Executor.executor = exctr
    def my_sim(H, _, sim_specs, info):
        exctr = info["executor"]
        task = exctr.submit(func=my_remote_func, app_args="...")
        while not task.finished:
            task.poll()
            if exctr.manager_kill_received():
                task.kill()
                break
            time.sleep(0.1)
        return H_o, UNSET_TAG
    """
)
SIMS = 4


def test_design_user_flow_runs_verbatim_on_the_local_endpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    lines = DESIGN_USER_FLOW.strip().splitlines()
    assert lines[0] == "from libensemble.executors.globus_compute_executor import GlobusComputeExecutor"
    code = "from bundle import GlobusComputeExecutor\n" + "\n".join(lines[1:])
    code = code.replace('endpoint_id="..."', 'endpoint_id="local"', 1)
    code = code.replace('app_args="..."', f"app_args={str(markers)!r}", 1)
    H_o = np.zeros(1, dtype=[("f", float)])
    namespace: dict[str, t.Any] = {
        "Executor": Executor,
        "time": time,
        "my_remote_func": my_remote_func,
        "H_o": H_o,
        "UNSET_TAG": UNSET_TAG,
    }
    exec(compile(code, "design_user_flow", "exec"), namespace)
    exctr = namespace["exctr"]
    assert isinstance(exctr, bundle.GlobusComputeExecutor) and exctr.endpoint == "local"
    assert Executor.executor is exctr

    ens = Ensemble(
        libE_specs=LibeSpecs(comms="local", nworkers=2, gen_on_manager=True, disable_resource_manager=True),
        sim_specs=SimSpecs(sim_f=namespace["my_sim"], inputs=["x"], outputs=[("f", float)]),
        gen_specs=GenSpecs(
            gen_f=uniform_random_sample,
            outputs=[("x", float, (1,))],
            user={"gen_batch_size": SIMS, "lb": np.array([0.0]), "ub": np.array([1.0])},
        ),
        alloc_specs=AllocSpecs(alloc_f=give_sim_work_first),
        exit_criteria=ExitCriteria(sim_max=SIMS),
    )
    ens.persis_info = add_unique_random_streams({}, 3, seed=1)
    H, _, flag = ens.run()
    assert flag == 0
    assert int(H["sim_ended"].sum()) == SIMS
    # each sim's task ran on the endpoint with app_args as the function's one argument
    written = list(markers.iterdir())
    assert len(written) == SIMS, written
    assert all(p.read_text() == str(markers) for p in written)


def test_app_args_and_args_together_are_refused():
    exctr = bundle.GlobusComputeExecutor(endpoint_id="local")
    with pytest.raises(ExecutorException, match="either as args=.* or as app_args"):
        exctr.submit(func=my_remote_func, args=("a",), app_args="b")
    with pytest.raises(ValueError, match="disagree"):
        bundle.GlobusComputeExecutor("local", endpoint_id="0b7d3c57-3f0e-4a53-9d1c-6a1f8c2e4b90")


def test_gcsession_names_of_the_design(tmp_path):
    ex = GCSession.get_or_create_executor("local", user_endpoint_config={"engine_type": "GlobusComputeEngine"})
    assert ex is GCSession.get_executor("local", {"engine_type": "GlobusComputeEngine"})
    opts = {"user_endpoint_config": {"engine_type": "GlobusComputeEngine"}}
    ex2, fid = GCSession.get_or_create("local", my_remote_func, **opts)
    assert ex2 is ex
    assert GCSession.get_or_create("local", my_remote_func, **opts) == (ex, fid)  # cached
    ex3, fid3 = GCSession.register_function("local", my_remote_func, **opts)
    assert (ex3, fid3) == (ex, fid)  # this executor already holds it: the same id
    assert ex.submit_to_registered_function(fid, args=(str(tmp_path),)).result(timeout=240)
    assert len(list(tmp_path.iterdir())) == 1
    GCSession.clear()
