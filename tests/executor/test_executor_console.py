"""A stopped executor-mode run (``bundle.Ensemble``) says its cause once on the console, then where the details are."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from tests.consoles import run_sim_script

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from libensemble.gen_funcs.sampling import uniform_random_sample
    from libensemble.manager import LoggedException
    from libensemble.specs import ExitCriteria, GenSpecs, LibeSpecs, SimSpecs

    from bundle import Ensemble, GlobusComputeExecutor


    def work(x):
        import libe_gc_no_such_package  # noqa: F401
        return x


    def sim(H, persis_info, sim_specs, libE_info):
    {body}


    if __name__ == "__main__":
        exctr = GlobusComputeExecutor("local", user_endpoint_config={{"engine_type": "GlobusComputeEngine"}})
        ensemble = Ensemble(
            executor=exctr,
            libE_specs=LibeSpecs(nworkers=2, comms="threads"),
            sim_specs=SimSpecs(sim_f=sim, inputs=["x"], outputs=[("f", float)]),
            gen_specs=GenSpecs(
                gen_f=uniform_random_sample,
                outputs=[("x", float, (1,))],
                user={{"gen_batch_size": 20, "lb": np.zeros(1), "ub": np.ones(1)}},
            ),
            exit_criteria=ExitCriteria(sim_max=20),
        )
        ensemble.add_random_streams()
        try:
            H, persis_info, flag = ensemble.run()
        except LoggedException:
            print("caught as LoggedException")
            raise
        print(f"exit flag {{flag}}")
    """
)

CASES = {
    "fail-fast": (
        "task = libE_info['executor'].submit(func=work, args=(float(H['x'][0][0]),))\n"
        "task.wait(timeout=120)\n"
        "return np.zeros(1, dtype=sim_specs['out']), persis_info",
        "ModuleNotFoundError: No module named 'libe_gc_no_such_package'",
        "SystematicTaskError",
    ),
    "malformed return": (
        "out = np.zeros(len(H), dtype=[('F', np.float32)])\nreturn out, persis_info",
        "sim_f returned H_o with fields [('F', float32)], but sim_specs['out'] declares [('f', float64)]",
        "SimOutputError",
    ),
}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stopped_run_says_its_cause_once(case: str, tmp_path: pathlib.Path) -> None:
    body, cause, error = CASES[case]
    returncode, console = run_sim_script(tmp_path, SCRIPT, body)
    lines = console.splitlines()
    assert returncode != 0 and "exit flag" not in console, console
    assert "caught as LoggedException" in console, console  # `except LoggedException` still catches it
    assert len(lines) < 15, f"{len(lines)} lines on the console:\n{console}"
    assert console.count(cause) == 1, console
    assert console.count("RunStoppedBySim") == 1, console
    saved = list(tmp_path.glob("libE_history_at_abort_*.npy"))
    assert saved, console
    assert "Raised by a sim on worker" in console and f"({error}); details in ensemble.log" in console, console
    assert f"history saved in {saved[0]}" in console, console
    if case == "fail-fast":
        (hint_line,) = [line for line in lines if line.startswith("Hint: ")]
        assert "install the package that provides it" in hint_line, console
    # everything else went to the log file, not to the console
    log = (tmp_path / "ensemble.log").read_text()
    assert "Traceback" in log and cause in log
