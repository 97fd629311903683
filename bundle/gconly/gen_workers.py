"""Where GC-only mode runs the generators: as libEnsemble's workers 1..k, in this process.

A stock run puts each generator on a worker: with ``num_active_gens: 2`` two persistent
generators start on workers 1 and 2, and the sims go to the others.  GC-only mode does the same
unless ``libE_specs.gen_on_manager`` is set: the generators run on worker threads numbered 1..k
(libEnsemble's own ``worker_main`` over a ``QCommThread``, as ``gen_on_manager`` runs its one
generator), marked as libEnsemble's ``gen_workers`` so allocation functions give them generator work
only, and the virtual sim workers are numbered after them.  ``nworkers`` keeps its GC-only meaning:
the number of sims in flight.

``k`` is the number of ``libE_specs.gen_workers`` when set (those ids), else
``alloc_specs["user"]["num_active_gens"]`` (default 1), and 0 without a generator.  A generator's
random stream is ``persis_info[<its worker id>]``, as in a stock run.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from libensemble.comms.comms import QCommThread, Timeout
from libensemble.message_numbers import EVAL_SIM_TAG, MAN_SIGNAL_FINISH, MAN_SIGNAL_KILL, PERSIS_STOP, STOP_TAG

from bundle.gconly.specs import GCOnlyConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WorkerLayout:
    """The worker ids of one GC-only run.

    Attributes
    ----------
    gen_ids : tuple of int
        Generator workers (threads of this process); empty when the generator runs on the manager.
    sim_ids : tuple of int
        Virtual sim workers, ``nworkers`` of them.
    on_manager : bool
        Whether the generator runs on the manager (``gen_on_manager``, worker 0).
    """

    gen_ids: tuple[int, ...]
    sim_ids: tuple[int, ...]
    on_manager: bool

    @property
    def total(self) -> int:
        """The manager's workers (generator and virtual sim workers; worker 0 not counted)."""
        return len(self.gen_ids) + len(self.sim_ids)


def plan_layout(
    gen_d: t.Mapping[str, t.Any], alloc_d: t.Mapping[str, t.Any], libE_d: t.Mapping[str, t.Any], nworkers: int
) -> WorkerLayout:
    """Return the worker ids of a run: its generator workers, then its virtual sim workers.

    Parameters
    ----------
    gen_d, alloc_d, libE_d : dict
        The run's validated ``gen_specs``, ``alloc_specs`` and ``libE_specs``.
    nworkers : int
        Virtual sim workers (sims in flight).

    Returns
    -------
    WorkerLayout

    Raises
    ------
    GCOnlyConfigError
        For ``gen_workers`` GC-only mode cannot number.
    """
    given = sorted({int(w) for w in libE_d.get("gen_workers") or []})
    if libE_d.get("gen_on_manager"):
        if given:
            raise GCOnlyConfigError(
                f"libE_specs.gen_workers={given} with gen_on_manager: in GC-only mode only generators run on "
                "workers of this process (the other workers are virtual sim workers); unset one of them"
            )
        return WorkerLayout((), tuple(range(1, nworkers + 1)), True)
    if given:
        gen_ids = tuple(given)
    elif gen_d.get("gen_f") is None and gen_d.get("generator") is None:
        gen_ids = ()
    else:
        active = (alloc_d.get("user") or {}).get("num_active_gens", 1)
        if isinstance(active, bool) or not isinstance(active, int) or active < 0:
            raise GCOnlyConfigError(f"alloc_specs['user']['num_active_gens'] must be an integer >= 0, got {active!r}")
        gen_ids = tuple(range(1, active + 1))
    total = len(gen_ids) + nworkers
    if gen_ids and (gen_ids[0] < 1 or gen_ids[-1] > total):
        raise GCOnlyConfigError(
            f"libE_specs.gen_workers={list(gen_ids)}: GC-only mode numbers its workers 1..{total} "
            f"({len(gen_ids)} generator workers and nworkers={nworkers} virtual sim workers); name ids in that range"
        )
    sim_ids = tuple(w for w in range(1, total + 1) if w not in gen_ids)
    return WorkerLayout(gen_ids, sim_ids, False)


class GenWorkerComm(QCommThread):  # type: ignore[misc]  # libensemble is untyped
    """A generator worker: libEnsemble's ``worker_main`` in a thread, refusing sim work.

    Parameters
    ----------
    w : int
        The worker id.
    total : int
        The manager's workers (what ``comm.get_num_workers()`` answers).
    sim_specs, gen_specs, libE_specs : dict
        As for ``worker_main`` (``sim_specs`` without ``globus_compute_endpoint``).
    on_sim_work : callable
        Called with the error when the allocation function sends this worker sim work; it must raise.
    """

    def __init__(
        self,
        w: int,
        total: int,
        sim_specs: dict[str, t.Any],
        gen_specs: dict[str, t.Any],
        libE_specs: dict[str, t.Any],
        on_sim_work: t.Callable[[BaseException], t.NoReturn],
    ) -> None:
        from libensemble.executors.executor import Executor
        from libensemble.worker import worker_main

        # As libEnsemble's threads comms start a worker: no log forwarding (same process), no resources.
        super().__init__(worker_main, total, sim_specs, gen_specs, libE_specs, w, False, None, Executor.executor)
        self.w = w
        self._on_sim_work = on_sim_work

    def __repr__(self) -> str:
        return f"{type(self).__name__}(w={self.w})"

    def send(self, *args: t.Any) -> None:
        """Pass the manager's message to the generator's worker; sim work is refused (sims go to the endpoint)."""
        if len(args) >= 2 and args[0] == EVAL_SIM_TAG:
            self._on_sim_work(
                GCOnlyConfigError(
                    f"the allocation function sent sim work to worker {self.w}, which runs a generator in GC-only "
                    "mode (sims go to the endpoint through the virtual sim workers); pick sim workers with "
                    "AllocSupport.avail_worker_ids(gen_workers=False), as libEnsemble's allocation functions do"
                )
            )
        super().send(*args)

    def stop(self, timeout: float) -> None:
        """Stop the worker as a normal ending does (``PERSIS_STOP``, then ``STOP_TAG``) and join its thread."""
        if not self.handle.is_alive():
            return
        super().send(PERSIS_STOP, MAN_SIGNAL_KILL)
        super().send(STOP_TAG, MAN_SIGNAL_FINISH)
        try:
            self.result(timeout=timeout)
        except Timeout:
            log.warning("generator worker %d did not stop within %g s; the script may not exit", self.w, timeout)
        except Exception as err:  # the generator raised meanwhile: the run's own error is what matters
            log.debug("generator worker %d ended with %r", self.w, err)


def start_gen_workers(
    layout: WorkerLayout,
    sim_specs: dict[str, t.Any],
    gen_specs: dict[str, t.Any],
    libE_specs: dict[str, t.Any],
    on_sim_work: t.Callable[[BaseException], t.NoReturn],
) -> list[GenWorkerComm]:
    """Start the generator workers of ``layout`` (each waits for the manager's first messages)."""
    comms = [GenWorkerComm(w, layout.total, sim_specs, gen_specs, libE_specs, on_sim_work) for w in layout.gen_ids]
    for comm in comms:
        comm.run()
    return comms


def stop_gen_workers(comms: t.Sequence[GenWorkerComm], timeout: float = 10.0) -> None:
    """Stop every generator worker still running (every exit of a run, so the calling script can exit)."""
    for comm in comms:
        comm.stop(timeout)
