"""A stopped GC-only run says its cause once on the console, with a hint that fits it and where the details are."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from tests.consoles import run_sim_script

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from libensemble.gen_funcs.sampling import uniform_random_sample
    from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

    from bundle import Ensemble, GCOnlySpecs


    def sim(H, persis_info, sim_specs, libE_info):
    {body}


    if __name__ == "__main__":
        ensemble = Ensemble(
            libE_specs=LibeSpecs(nworkers=4),
            sim_specs=SimSpecs(sim_f=sim, inputs=["x"], outputs=[("f", float)], globus_compute_endpoint="local"),
            gen_specs=GenSpecs(
                gen_f=uniform_random_sample,
                outputs=[("x", float, (2,))],
                user={{"gen_batch_size": 20, "lb": -np.ones(2), "ub": np.ones(2)}},
            ),
            exit_criteria=ExitCriteria(sim_max=20),
            gc_specs=GCOnlySpecs(user_endpoint_config={{"engine_type": "GlobusComputeEngine"}}),
        )
        ensemble.add_random_streams()
        H, persis_info, flag = ensemble.run()
        print(f"exit flag {{flag}}")
    """
)

CASES = {
    "missing package": (
        "import libe_gc_no_such_package  # noqa: F401\n"
        "out = np.zeros(len(H), dtype=sim_specs['out'])\n"
        "return out, persis_info",
        "ModuleNotFoundError: No module named 'libe_gc_no_such_package'",
        "install the package that provides it",
    ),
    "malformed return": (
        "out = np.zeros(len(H), dtype=[('F', np.float32)])\n"
        "out['F'] = np.sum(H['x'] ** 2, axis=1)\n"
        "return out, persis_info",
        "sim_f returned H_o with fields [('F', float32)], but sim_specs['out'] declares [('f', float64)]",
        "fix what sim_f returns",
    ),
}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stopped_run_says_its_cause_once(case: str, tmp_path: pathlib.Path) -> None:
    body, cause, hint = CASES[case]
    returncode, console = run_sim_script(tmp_path, SCRIPT, body)
    lines = console.splitlines()
    assert returncode != 0 and "exit flag" not in console, console
    assert len(lines) < 15, f"{len(lines)} lines on the console:\n{console}"
    assert console.count(cause) == 1, console
    assert console.count("SystematicSimError") == 1, console
    (hint_line,) = [line for line in lines if line.startswith("Hint: ")]
    assert hint in hint_line, console
    assert "travels by value" not in console  # the hint for a function the endpoint cannot import
    errors = tmp_path / "gconly_sim_errors"
    assert f"the remote traceback is in {errors}" in console and list(errors.glob("sim_*.txt")), console
    saved = list(tmp_path.glob("libE_history_at_abort_*.npy"))
    assert saved and f"History saved in {saved[0]}" in console, console
    # everything else went to the log file, not to the console
    assert "Traceback" in (tmp_path / "ensemble.log").read_text()
