"""libEnsemble's ``local`` comms: the worker processes submit to one local endpoint, the manager's.

A run has one engine, as it has one endpoint at a site: ``slots_per_node`` caps the tasks in flight
across all worker processes (see :mod:`bundle.endpoints.local.shared`).
"""

from __future__ import annotations

import itertools
import sys
import textwrap

from libensemble import Ensemble
from libensemble.specs import ExitCriteria, SimSpecs

from bundle import GlobusComputeExecutor
from tests.ensembles import executor_libe_specs, given_rows
from tests.executor import sims

SPAN = f"""\
#!{sys.executable}
# Sleep a second; print when, and the engine's worker pool (the topmost process_worker_pool above this one).
import time, psutil
start = time.time()
time.sleep(1.0)
end = time.time()
pool = None
for proc in psutil.Process().parents():
    if any("process_worker_pool" in part for part in proc.cmdline()):
        pool = proc.pid
print(f"start={{start}} end={{end}} pool={{pool}}")
"""


def test_worker_processes_share_the_managers_engine(tmp_path, monkeypatch):
    """Three worker processes, the template as shipped (one slot): one worker pool runs every task, one at a time."""
    monkeypatch.chdir(tmp_path)
    span = tmp_path / "span.py"
    span.write_text(textwrap.dedent(SPAN))
    span.chmod(0o755)
    exctr = GlobusComputeExecutor("local")
    exctr.register_app(full_path=str(span), app_name="span", mpi=False)
    n = 6
    ens = Ensemble(
        executor=exctr,
        libE_specs=executor_libe_specs(3, tmp_path / "ensemble", comms="local"),
        sim_specs=SimSpecs(
            sim_f=sims.run_span, inputs=["x"], outputs=[("start", float), ("end", float), ("pool", int)]
        ),
        exit_criteria=ExitCriteria(sim_max=n),
        H0=given_rows(n),
    )
    H, _, flag = ens.run()
    assert flag == 0
    done = H[H["sim_ended"]]
    assert len(done) == n
    assert len(set(done["sim_worker"])) > 1, "the sims should have been spread over several worker processes"
    assert len(set(done["pool"])) == 1, f"several engines ran the tasks: worker pools {sorted(set(done['pool']))}"
    spans = sorted(zip(done["start"], done["end"], strict=True))
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert not overlaps, f"one slot, yet tasks overlapped: {overlaps}"
