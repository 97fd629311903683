"""Script functions reached through a partial or a container, run as a real script on the local endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

DRIVER = textwrap.dedent(
    """
    import functools

    import numpy as np
    from libensemble.gen_funcs.sampling import uniform_random_sample
    from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

    from bundle import Ensemble, GCOnlySpecs, GlobusComputeExecutor
    from bundle.endpoints.session import GCSession

    SCALE = 3.0

    def norm(x, power):
        return SCALE * np.sum(np.asarray(x) ** power, axis=-1)

    NORMS = {"two": [functools.partial(norm, power=2)]}

    def sim(H, persis_info, sim_specs, libE_info, power=1):
        out = np.zeros(len(H), dtype=sim_specs["out"])
        out["f"] = NORMS["two"][0](H["x"]) + 0 * power
        return out, persis_info

    ens = Ensemble(
        libE_specs=LibeSpecs(nworkers=2),
        sim_specs=SimSpecs(sim_f=functools.partial(sim, power=2), inputs=["x"], outputs=[("f", float)],
                           globus_compute_endpoint="local"),
        gen_specs=GenSpecs(gen_f=uniform_random_sample, outputs=[("x", float, (2,))],
                           user={"gen_batch_size": 6, "lb": -np.ones(2), "ub": np.ones(2)}),
        exit_criteria=ExitCriteria(sim_max=6),
        gc_specs=GCOnlySpecs(user_endpoint_config={"engine_type": "GlobusComputeEngine"}),
    )
    ens.add_random_streams()
    H, _, flag = ens.run()
    done = H[H["sim_ended"]]
    print("GCONLY", flag, len(done), np.allclose(done["f"], SCALE * np.sum(done["x"] ** 2, axis=1)), flush=True)

    exctr = GlobusComputeExecutor("local", user_endpoint_config={"engine_type": "GlobusComputeEngine"})
    task = exctr.submit(func=functools.partial(norm, power=3), args=([1.0, 2.0],))
    print("EXECUTOR", task.result(timeout=120), flush=True)
    GCSession.clear()
    """
)


@pytest.mark.timeout(600)
def test_a_partial_sim_f_and_functions_in_containers_run_on_the_endpoint(tmp_path):
    (tmp_path / "driver.py").write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "driver.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GCONLY 0 6 True" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "EXECUTOR 27.0" in proc.stdout, proc.stdout + proc.stderr[-3000:]
