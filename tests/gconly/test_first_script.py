"""A first GC-only script, run as a real script on the local endpoint: it works, or fails fast and says why."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bundle.gconly import SystematicSimError
from bundle.gconly.failfast import FailFast, cause_line, failure_summary, hint_for

# The natural first script: module-level numpy and constant, sim_f in __main__.  One process runs
# three ensembles on one local endpoint: correct values; a sim failing for some points (the run goes
# on, with a one-line summary on stderr); a sim with a systematic bug (the run stops early).
DRIVER = textwrap.dedent(
    """
    import sys

    import numpy as np
    from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
    from libensemble.gen_funcs.persistent_sampling import persistent_uniform
    from libensemble.specs import AllocSpecs, ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

    from bundle import Ensemble, GCOnlySpecs

    SCALE = 2.0
    LIMIT = 2.0

    def sim(H, persis_info, sim_specs, libE_info):
        out = np.zeros(len(H), dtype=sim_specs["out"])
        out["f"] = SCALE * np.sum(H["x"] ** 2, axis=1)
        return out, persis_info

    def sometimes(H, persis_info, sim_specs, libE_info):
        if H["x"][0][0] > LIMIT:
            raise ValueError("x0 above the limit")
        return sim(H, persis_info, sim_specs, libE_info)

    def typo(H, persis_info, sim_specs, libE_info):
        return np.zeros(len(H), dtype=sim_specs["out"]) * SCALLE

    def broken(H, persis_info, sim_specs, libE_info):
        return "f=" + str(SCALE * np.sum(H["x"] ** 2))  # a malformed return, every time

    def run(sim_f, sim_max, workdir):
        ens = Ensemble(
            libE_specs=LibeSpecs(nworkers=4, workflow_dir_path=workdir, use_workflow_dir=True),
            sim_specs=SimSpecs(sim_f=sim_f, inputs=["x"], outputs=[("f", float)], globus_compute_endpoint="local"),
            gen_specs=GenSpecs(gen_f=persistent_uniform, persis_in=["f", "x", "sim_id"],
                               outputs=[("x", float, (2,))],
                               user={"initial_batch_size": 4, "lb": np.array([-3, -2]), "ub": np.array([3, 2])}),
            alloc_specs=AllocSpecs(alloc_f=only_persistent_gens),
            exit_criteria=ExitCriteria(sim_max=sim_max),
            gc_specs=GCOnlySpecs(user_endpoint_config={"engine_type": "GlobusComputeEngine",
                                                       "max_workers_per_node": 2}),
        )
        ens.add_random_streams()
        H, _, flag = ens.run()
        return H[H["sim_ended"]], ens.sim_errors

    done, errors = run(sim, 12, "good")
    ok = np.allclose(done["f"], SCALE * np.sum(done["x"] ** 2, axis=1))
    print("GOOD", len(done), ok, len(errors), flush=True)
    done, errors = run(lambda H, p, s, i: sometimes(H, p, s, i), 24, "partial")  # a lambda calling another function
    print("PARTIAL", len(done), len(errors), sorted(errors) == sorted(done["sim_id"][done["x"][:, 0] > LIMIT]),
          flush=True)
    try:
        run(typo, 200, "typo")
    except Exception as err:
        print("PRECHECK", type(err).__name__, err, flush=True)
    print("MARK before the broken run", file=sys.stderr, flush=True)
    run(broken, 200, "broken")  # raises: the script exits non-zero
    print("NOT REACHED", flush=True)
    """
)


@pytest.mark.timeout(600)
def test_first_script_works_then_a_systematic_bug_stops_the_run_early(tmp_path: pathlib.Path) -> None:
    (tmp_path / "driver.py").write_text(DRIVER)
    proc = subprocess.run(
        [sys.executable, "driver.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    out, err = proc.stdout, proc.stderr
    # 1. module-level np and SCALE reach the endpoint: correct values, no failures
    assert "GOOD 12 True 0" in out, out + err
    # 2. failures of some sims: the run goes on; one summary line on stderr names count, cause and folder
    partial = [ln for ln in out.splitlines() if ln.startswith("PARTIAL")]
    assert partial and partial[0].endswith("True"), out + err
    n_failed = int(partial[0].split()[2])
    before, _, after = err.partition("MARK before the broken run")
    summaries = [ln for ln in before.splitlines() if ln.startswith("libe-gc:")]
    if n_failed:
        assert len(summaries) == 1, before
        assert f"{n_failed} of 24 sims failed" in summaries[0] and "ValueError: x0 above the limit" in summaries[0]
        assert str(tmp_path / "partial" / "gconly_sim_errors") in summaries[0]
    else:
        assert not summaries, before
    # 3. a name undefined in the script is refused before anything is submitted
    precheck = [ln for ln in out.splitlines() if ln.startswith("PRECHECK")]
    assert precheck and "SimSerializationError" in precheck[0] and "'SCALLE'" in precheck[0], out
    assert "nothing was submitted" in precheck[0] and not (tmp_path / "typo" / "gconly_sim_errors").exists()
    # 4. the systematic bug: non-zero exit, the remote cause and what to change on the console, history saved
    assert proc.returncode != 0 and "NOT REACHED" not in out
    assert "SystematicSimError: GC-only run stopped early: the first 5 failures all had the same error" in after
    assert after.count("sim_f returned a str where H_o belongs") == 1, after
    assert "Hint: fix what sim_f returns" in after and "gc_specs.fail_fast=0" in after
    saved = list((tmp_path / "broken").glob("libE_history_at_abort_*.npy"))
    assert saved and f"History saved in {saved[0]}" in after
    H = np.load(saved[0])
    assert H["sim_ended"].sum() <= 8 and len(H) < 200  # stopped within the first few sims


def test_fail_fast_needs_the_first_sims_to_fail_alike(tmp_path: pathlib.Path) -> None:
    watch = FailFast(3, tmp_path)
    watch.failed(0, "Traceback ...\nNameError: name 'np' is not defined")
    watch.failed(4, "Traceback ...\nNameError: name 'np' is not defined\n")
    with pytest.raises(SystematicSimError) as info:
        watch.failed(2, "NameError: name 'np' is not defined")
    assert info.value.cause == "NameError: name 'np' is not defined"
    assert "first 3 failures" in str(info.value) and str(tmp_path / "sim_0.txt") in str(info.value)
    assert "import it inside sim_f" in str(info.value)
    again = FailFast(1, tmp_path)
    with pytest.raises(SystematicSimError):
        again.failed(0, "NameError: name 'np' is not defined")
    again.failed(1, "NameError: name 'np' is not defined")  # said once: the watch is disarmed

    mixed = FailFast(3, tmp_path)
    mixed.failed(0, "ValueError: bad point 17")
    mixed.failed(1, "ValueError: bad point 3")  # digits aside, the same error
    mixed.failed(2, "KeyError: 'x'")  # a different error: not one systematic bug
    mixed.failed(3, "KeyError: 'x'")
    mixed.failed(4, "KeyError: 'x'")

    one_good = FailFast(2, tmp_path)
    one_good.failed(0, "ModuleNotFoundError: No module named 'mylib'")
    one_good.succeeded()
    one_good.failed(1, "ModuleNotFoundError: No module named 'mylib'")
    one_good.failed(2, "ModuleNotFoundError: No module named 'mylib'")

    off = FailFast(0, tmp_path)
    for i in range(10):
        off.failed(i, "NameError: name 'np' is not defined")


def test_hints_and_summary_name_the_cause() -> None:
    assert cause_line("Traceback (most recent call last):\n  ...\nImportError: cannot import name 'x'\n\n") == (
        "ImportError: cannot import name 'x'"
    )
    assert "install the package" in hint_for("ModuleNotFoundError: No module named 'scipy'")
    assert "returns" in hint_for("sim_f returned a str where H_o belongs; return a NumPy structured array")
    assert "DeserializationError" not in hint_for("ZeroDivisionError: division by zero")
    tb = 'Traceback (most recent call last):\n  File "s.py", line 1, in sim\n'
    line = failure_summary({7: tb + "ValueError: no", 3: tb + "KeyError: 'f'"}, 20, pathlib.Path("errs"))
    assert line.startswith("libe-gc: 2 of 20 sims failed; first (sim_id 3): KeyError: 'f'; see ")
    assert "\n" not in line and failure_summary({}, 20, pathlib.Path("errs")) == ""
