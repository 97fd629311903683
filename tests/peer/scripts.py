"""Which of libEnsemble's shipped test scripts the peer suite runs, and in which modes.

Every script runs stock (as shipped) first: a failure there is libEnsemble's or this machine's,
not the bundle's.  Then, where the script can exercise the bundle:

* **executor** when the script builds an ``MPIExecutor`` (its sims launch apps through
  ``libE_info["executor"]``);
* **gconly** when its sims are Python functions that need no executor.

A script whose checks GC-only mode cannot meet by design carries the reason (one line) in
``gconly_na``; the docs list them ("libEnsemble's own test scripts" in ``docs/gconly.rst``).
A script whose stock run is left out (``stock=False``) says why next to it: only where a bundle
run covers what the issue asks and the stock run is expensive or shows nothing of the bundle.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PeerScript:
    """One shipped test script and how the peer suite runs it."""

    path: str
    """Relative to libEnsemble's ``tests`` folder."""
    executor: bool = False
    """Run it with ``MPIExecutor`` swapped for ``GlobusComputeExecutor("local")``."""
    gconly_na: str | None = None
    """Why GC-only mode cannot run it by design (one line); None: run it in GC-only mode."""
    timeout: float = 240.0
    """Seconds a run may take before it is stopped (each mode)."""
    stock: bool = True
    """Run it as shipped too (the baseline: a failure there is libEnsemble's or this machine's)."""

    @property
    def name(self) -> str:
        """The script's file name without ``.py``."""
        return self.path.rsplit("/", 1)[-1].removesuffix(".py")


_EXECUTOR_SIM = "its sim_f launches apps through libE_info['executor']; GC-only sims are Python functions"
_GEN_WORKER = (
    "it counts nworkers worker directories; GC-only runs its generator on a worker of its own beside nworkers "
    "sim workers (with use_worker_dirs, nworkers + 1 directories)"
)

SCRIPTS: tuple[PeerScript, ...] = (
    # The six named in issue 24.
    PeerScript(
        "functionality_tests/test_executor_hworld_pass_fail.py",
        executor=True,
        gconly_na=_EXECUTOR_SIM,
        # Its per-worker sim counter must match the row order: the worker processes share the manager's engine,
        # so their sims start in step (with an engine each, they did not).
    ),
    PeerScript("functionality_tests/test_uniform_sampling.py"),
    PeerScript(
        "functionality_tests/test_stats_output.py",
        executor=True,
        gconly_na=_EXECUTOR_SIM + " and sizes each launch from the worker's resource sets",
        # 80 MPI launches one after another (about 145 s alone here); seen at 267 s for the first of its two
        # ensembles while the rest of the suite ran beside it, and over 420 s for both.
        timeout=900.0,
        stock=False,  # 80 MPI launches, the suite's longest run; its executor run is the one the issue asks for
    ),
    PeerScript("functionality_tests/test_persistent_uniform_gen_decides_stop.py"),
    PeerScript(  # GC-only must refuse it before the first submit: test_peer.py checks that on its own
        "functionality_tests/test_fast_alloc.py",
        gconly_na="its sim_f returns an 8 MB row per sim, over Globus Compute's 10 MiB result limit once serialized",
        stock=False,  # 180 sims of 8 MB rows; no bundle run to compare with, only the refusal
    ),
    PeerScript("functionality_tests/test_calc_exception.py"),
    # Asked for by the issue.
    PeerScript("functionality_tests/test_executor_simple.py", executor=True, gconly_na=_EXECUTOR_SIM),
    PeerScript("functionality_tests/test_persistent_uniform_sampling.py"),
    PeerScript("regression_tests/test_persistent_aposmm_scipy.py"),
    PeerScript("regression_tests/test_persistent_aposmm_periodic.py"),
    # libEnsemble's sim directory options with Python sims: per-sim dirs (in worker dirs, or with copy back) with
    # copied and symlinked files, and sim_input_dir.
    PeerScript("functionality_tests/test_sim_dirs_per_worker.py", gconly_na=_GEN_WORKER),
    PeerScript("functionality_tests/test_sim_dirs_per_calc.py"),
    PeerScript("functionality_tests/test_sim_input_dir_option.py"),
    # The forces MPI app, built with mpicc, in per-sim directories.
    PeerScript("functionality_tests/test_executor_forces_tutorial.py", executor=True, gconly_na=_EXECUTOR_SIM),
)

REFUSAL = PeerScript("functionality_tests/test_fast_alloc.py", timeout=180.0)
"""test_fast_alloc in GC-only mode, which must refuse it before the first sim (its result rows are over 10 MiB)."""

MODE_OF_TEST = {
    "test_stock": "stock",
    "test_executor_mode": "executor",
    "test_gconly_mode": "gconly",
    "test_gconly_refuses_oversized_results_before_submitting": "gconly",
}
"""The mode each test of ``test_peer.py`` runs its script in (the session starts those runs ahead)."""
