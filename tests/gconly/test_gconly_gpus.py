"""GC-only mode with one GPU per Python worker (``pin_workers_to_gpus``: Parsl's ``available_accelerators``)."""

from __future__ import annotations

import numpy as np
from libensemble.specs import ExitCriteria, LibeSpecs, SimSpecs

from bundle import Ensemble, GCOnlySpecs


def gpu_sim(H, persis_info, sim_specs, libE_info):
    """Report the device the worker was pinned to, and when the sim ran (imports inside: runs on the endpoint)."""
    import os
    import time

    import numpy as np

    out = np.zeros(len(H), dtype=sim_specs["out"])
    out["start"] = time.time()
    time.sleep(0.5)
    out["end"] = time.time()
    out["device"] = os.environ.get("CUDA_VISIBLE_DEVICES", "-")
    out["ze"] = os.environ.get("ZE_AFFINITY_MASK", "-")
    return out, persis_info


def test_one_gpu_per_sim_sims_never_share_a_device(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = 8
    H0 = np.zeros(n, dtype=[("x", float), ("sim_id", int), ("sim_started", bool)])
    H0["sim_id"] = np.arange(n)
    options = {"engine_type": "GlobusComputeEngine", "gpus_per_node": 2, "pin_workers_to_gpus": True}
    ens = Ensemble(
        libE_specs=LibeSpecs(nworkers=4),
        sim_specs=SimSpecs(
            sim_f=gpu_sim,
            inputs=["x"],
            outputs=[("device", "U8"), ("ze", "U8"), ("start", float), ("end", float)],
            globus_compute_endpoint="local",
        ),
        exit_criteria=ExitCriteria(sim_max=n),
        gc_specs=GCOnlySpecs(user_endpoint_config=options, local_options={"start_timeout": 300}),
        H0=H0,
    )
    H, _, flag = ens.run()
    assert flag == 0 and not ens.sim_errors
    done = H[H["sim_ended"]]
    assert len(done) == n
    assert set(done["device"]) == {"0", "1"}, "two GPUs: every sim runs on a worker pinned to one of them"
    assert (done["device"] == done["ze"]).all()
    for i in range(n):
        for j in range(i + 1, n):
            a, b = done[i], done[j]
            if a["device"] == b["device"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"], "two sims ran on one GPU at once"
