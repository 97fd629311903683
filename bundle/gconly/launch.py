"""Run an ensemble in GC-only mode: libEnsemble's stock manager, virtual workers, one endpoint.

:func:`libE` has libEnsemble's ``libE()`` signature plus ``gc_specs``.  When
``sim_specs.globus_compute_endpoint`` is set it validates the specs as libEnsemble does,
starts no worker process, runs the generators on worker threads 1..k as a stock run places them
(or on the manager with ``gen_on_manager``, see :mod:`bundle.gconly.gen_workers`) and hands them
and ``nworkers`` virtual worker comms to ``libensemble.libE.manager``; otherwise it calls
libEnsemble's own ``libE()``.  libEnsemble's legacy Globus Compute runner (one blocked
worker per future) is never reached through this path.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import typing as t

from bundle.gconly.availability import EndpointUnavailableError
from bundle.gconly.failfast import SystematicSimError
from bundle.gconly.specs import GCOnlyConfigError, GCOnlySpecs
from bundle.processes import interrupt

if t.TYPE_CHECKING:
    import numpy.typing as npt

    from bundle.gconly.dispatch import SimDispatcher

log = logging.getLogger(__name__)

ERROR_DIR = "gconly_sim_errors"
"""Folder (in the workflow dir) holding ``sim_<sim_id>.txt`` for each failed simulation."""


def gc_endpoint_of(sim_specs: t.Any) -> str:
    """Return ``sim_specs.globus_compute_endpoint`` (``""`` when unset), for a dict or a ``SimSpecs``."""
    if isinstance(sim_specs, t.Mapping):
        value = sim_specs.get("globus_compute_endpoint")
    else:
        value = getattr(sim_specs, "globus_compute_endpoint", None)
    return str(value).strip() if value else ""


class RunResult(t.NamedTuple):
    """What a GC-only run returns, plus the failed sims' error text."""

    H: npt.NDArray[t.Any]
    persis_info: dict[t.Any, t.Any]
    exit_flag: int
    sim_errors: dict[int, str]
    tasks: int
    """Remote tasks submitted (fewer than sims when batching)."""


def run_gconly(
    sim_specs: t.Any,
    gen_specs: t.Any,
    exit_criteria: t.Any,
    persis_info: dict[t.Any, t.Any] | None = None,
    alloc_specs: t.Any = None,
    libE_specs: t.Any = None,
    H0: npt.NDArray[t.Any] | None = None,
    *,
    gc_specs: GCOnlySpecs | t.Mapping[str, t.Any] | None = None,
    nworkers: int | None = None,
) -> RunResult:
    """Run one ensemble in GC-only mode.

    Parameters
    ----------
    sim_specs, gen_specs, exit_criteria, persis_info, alloc_specs, libE_specs, H0
        As for libEnsemble's ``libE()``; ``sim_specs.globus_compute_endpoint`` must be set.
    gc_specs : GCOnlySpecs or dict, optional
        Template options, batching and polling (see :class:`~bundle.gconly.specs.GCOnlySpecs`).
    nworkers : int, optional
        Virtual workers (sims in flight); default ``libE_specs.nworkers``, or 1 when unset.

    Returns
    -------
    RunResult
        ``(H, persis_info, exit_flag, sim_errors, tasks)``.

    Raises
    ------
    GCOnlyConfigError
        For options GC-only mode cannot honour.
    SimSerializationError
        When ``sim_f`` or a sim input cannot be serialized (before anything is submitted).
    bundle.errors.TemplateOptionError
        When ``user_endpoint_config`` fails the template's schema.
    EndpointUnavailableError
        When the endpoint cannot run sims: unknown or offline at start, workers that never start,
        the service refusing tasks, a cloud endpoint that cannot start a user endpoint for
        ``user_endpoint_config`` or goes offline for ``gc_specs.offline_timeout`` seconds, or no result
        for ``gc_specs.result_timeout`` seconds (the history is saved first; the message names the file).
    """
    import numpy as np
    from libensemble.comms.logs import manager_logging_config
    from libensemble.history import History
    from libensemble.resources.resources import Resources
    from libensemble.tools.alloc_support import AllocSupport

    from bundle.endpoints.health import health_of
    from bundle.endpoints.session import LOCAL, GCSession, parse_endpoint
    from bundle.endpoints.templates import get_template
    from bundle.gconly.availability import ResultWatch, check_endpoint_online, wait_local_ready
    from bundle.gconly.dispatch import SimDispatcher, VirtualWorkerComm
    from bundle.gconly.engine_choice import choose_engine
    from bundle.gconly.failfast import FailFast, report_failures
    from bundle.gconly.gen_workers import plan_layout, start_gen_workers, stop_gen_workers
    from bundle.gconly.journal import JOURNAL_FILE, Journal
    from bundle.gconly.resume import Reattach
    from bundle.gconly.serialization import serializer_of, ship_checked
    from bundle.gconly.simdirs import copy_back, plan_sim_dirs

    gc = GCOnlySpecs.coerce(gc_specs)
    endpoint = gc_endpoint_of(sim_specs)
    if not endpoint:
        raise GCOnlyConfigError("GC-only mode needs sim_specs.globus_compute_endpoint ('local' or an endpoint UUID)")
    ep_name, ep_template = parse_endpoint(endpoint, gc.template)

    persis_info = {} if persis_info is None else persis_info
    H0_run, sim_d, gen_d, alloc_d, libE_d, exit_d = _spec_dicts(
        sim_specs, gen_specs, exit_criteria, persis_info, alloc_specs, libE_specs, H0
    )
    n = _virtual_workers(sim_d, libE_d, nworkers)
    layout = plan_layout(gen_d, alloc_d, libE_d, n)
    libE_d.update(nworkers=layout.total)
    if not layout.on_manager:
        libE_d.update(gen_workers=list(layout.gen_ids))

    # The manager's and the generator thread's copy: libEnsemble's worker would build its
    # legacy Globus Compute runner from a set globus_compute_endpoint.
    mgr_sim_d = dict(sim_d, globus_compute_endpoint="")

    if gc.local_options and ep_name != LOCAL:
        raise GCOnlyConfigError("gc_specs.local_options apply to 'local' endpoints only")
    # Absolute: a generator worker may change directory (libEnsemble's gen directory options) while the run goes.
    workflow_dir = pathlib.Path(libE_d.get("workflow_dir_path") or ".").absolute()
    interrupt.install()  # Ctrl-C cancels the sims in flight and stops the endpoint; libEnsemble saves its history
    interrupt.expect_history_in(workflow_dir)
    sim_dirs = plan_sim_dirs(libE_d, workflow_dir, ep_name == LOCAL, gc.remote_workdir)
    plan, journal_state, H0_run, exit_d = _resume_plan(gc, gen_d, libE_d, exit_d, workflow_dir, H0_run)
    choice = choose_engine(get_template(ep_template) if ep_template else None, gc.user_endpoint_config)
    # A one-rank spec per sim is a cost the user should see (a node or slot per sim), not only a detail.
    log.log(logging.WARNING if choice.resource_specification else logging.INFO, "GC-only engine: %s", choice.note)
    if gc.sdk_options and ep_name == LOCAL:
        raise GCOnlyConfigError("gc_specs.sdk_options configure the SDK Executor of an endpoint UUID, not 'local'")
    executor = GCSession.get_executor(
        endpoint,
        choice.user_endpoint_config,
        template=gc.template,
        sdk_options=gc.sdk_options or None,
        local_options=gc.local_options,
    )
    health = health_of(executor)
    if ep_name != LOCAL and gc.require_online and check_endpoint_online(executor, endpoint) == "online":
        if health is not None:
            health.mark_online()
    if ep_name == LOCAL:  # the engine's start-up must not count against wallclock_max
        wait_local_ready(executor, endpoint)

    for key in ("sim_f", "simulator"):  # functions of the calling script travel with the globals they read
        if callable(sim_d.get(key)):
            sim_d = dict(sim_d, **{key: ship_checked(serializer_of(executor), key, sim_d[key])})
    error_dir = workflow_dir / ERROR_DIR
    dispatcher: SimDispatcher = SimDispatcher(
        executor,
        sim_d,
        n,
        gc.batch_size,
        error_dir,
        gc.poll_interval,
        pack_calls=gc.pack_calls,
        worker_ids=layout.sim_ids,
        sim_dirs=sim_dirs.bound(),
    )
    dispatcher.total_workers = layout.total
    dispatcher.check_inputs(persis_info)
    dispatcher.endpoint = endpoint
    dispatcher.watch = ResultWatch(gc.result_timeout)
    # require_online=False never asks for the endpoint's status: its sims may wait for it to come back.
    dispatcher.health, dispatcher.offline_timeout = health, gc.offline_timeout if gc.require_online else None
    dispatcher.failfast = FailFast(
        gc.fail_fast, error_dir, sim_module=getattr(_user_function(sim_d), "__module__", None)
    )
    if plan is not None and ep_name != LOCAL:
        dispatcher.reattach = Reattach(executor, plan, endpoint)
    journal = None
    if libE_d.get("save_every_k_sims") or plan is not None:
        journal = Journal(
            workflow_dir / JOURNAL_FILE, executor, endpoint, journal_state.next_seq, resume=plan is not None
        )
        dispatcher.journal = journal

    Resources.resources = None  # no resource sets: sims run on the endpoint
    AllocSupport.gen_counter = 0
    hist = History(alloc_d, mgr_sim_d, gen_d, exit_d, H0_run)
    exit_logger = None if libE_d.get("disable_log_files") else manager_logging_config(specs=libE_d)

    log.info(
        "GC-only run: endpoint %s, %d virtual sim workers %s, generator workers %s, batch size %d",
        endpoint,
        n,
        list(layout.sim_ids),
        "[0] (on the manager)" if layout.on_manager else list(layout.gen_ids),
        gc.batch_size,
    )
    gen_comms = start_gen_workers(layout, mgr_sim_d, gen_d, libE_d, dispatcher.refuse)
    by_id: dict[int, t.Any] = {c.w: c for c in gen_comms}
    by_id.update((w, VirtualWorkerComm(dispatcher, w)) for w in layout.sim_ids)
    wcomms = [by_id[w] for w in sorted(by_id)]  # the manager indexes its comms by worker id
    manager_args = (wcomms, mgr_sim_d, gen_d, exit_d, persis_info, alloc_d, libE_d, hist)

    # The executor is cached and shared: its spec is this run's only while the manager runs, restored on close.
    previous_spec = executor.resource_specification
    executor.resource_specification = choice.resource_specification

    def restore_spec() -> None:
        executor.resource_specification = previous_spec

    H, persis_out, flag = _run_manager(
        manager_args,
        dispatcher,
        journal,
        [lambda: stop_gen_workers(gen_comms), exit_logger, restore_spec],
        workflow_dir,
    )
    copy_back(libE_d, sim_dirs)  # ensemble_copy_back, as each stock worker runs it at its end
    if dispatcher.errors:
        ended = int(np.count_nonzero(H["sim_ended"])) if "sim_ended" in (H.dtype.names or ()) else len(H)
        report_failures(dispatcher.errors, ended, error_dir)
    return RunResult(H, persis_out, flag, dict(dispatcher.errors), dispatcher.submitted)


def _spec_dicts(
    sim_specs: t.Any,
    gen_specs: t.Any,
    exit_criteria: t.Any,
    persis_info: dict[t.Any, t.Any],
    alloc_specs: t.Any,
    libE_specs: t.Any,
    H0: npt.NDArray[t.Any] | None,
) -> tuple[t.Any, dict[str, t.Any], dict[str, t.Any], dict[str, t.Any], dict[str, t.Any], dict[str, t.Any]]:
    """Validate the specs as ``libE()`` does; return ``(H0, sim, gen, alloc, libE_specs, exit_criteria)`` as dicts."""
    import numpy as np
    from libensemble import specs as lspecs
    from libensemble.utils.misc import specs_dump

    def coerce(value: t.Any, cls: t.Any) -> t.Any:
        # As libE()'s validate_call does: dicts become libEnsemble's spec classes with all their
        # validators (the ones _EnsembleSpecs' annotations name lack them).
        if value is None:
            return cls()
        return cls(**value) if isinstance(value, t.Mapping) else value

    ensemble = lspecs._EnsembleSpecs(
        H0=np.empty([0]) if H0 is None else H0,
        libE_specs=coerce(libE_specs, lspecs.LibeSpecs),
        persis_info=persis_info,
        sim_specs=coerce(sim_specs, lspecs.SimSpecs),
        gen_specs=coerce(gen_specs, lspecs.GenSpecs),
        alloc_specs=coerce(alloc_specs, lspecs.AllocSpecs),
        exit_criteria=coerce(exit_criteria, lspecs.ExitCriteria),
    )
    sim_d, gen_d, alloc_d, libE_d = (
        specs_dump(s, by_alias=True)
        for s in (ensemble.sim_specs, ensemble.gen_specs, ensemble.alloc_specs, ensemble.libE_specs)
    )
    exit_d = specs_dump(ensemble.exit_criteria, by_alias=True, exclude_none=True)
    if getattr(ensemble.gen_specs, "generator", None) is not None:
        gen_d["generator"] = ensemble.gen_specs.generator  # the object itself, as libE() does
    return ensemble.H0, sim_d, gen_d, alloc_d, libE_d, exit_d


def _virtual_workers(sim_d: dict[str, t.Any], libE_d: dict[str, t.Any], nworkers: int | None) -> int:
    """Refuse options GC-only mode cannot honour; set libE_specs for a one-process run; return ``nworkers``."""
    if sim_d.get("threaded"):
        raise GCOnlyConfigError("sim_specs.threaded has no meaning in GC-only mode (sims run on the endpoint)")
    if libE_d.get("dry_run"):
        log.warning("Dry run. All inputs validated. Exiting.")
        sys.exit()

    mpi = sys.modules.get("mpi4py.MPI")
    if libE_d.get("comms") == "mpi" and mpi is not None and mpi.COMM_WORLD.Get_size() > 1:
        raise GCOnlyConfigError(
            "GC-only mode runs in one process (the manager); start the calling script without mpirun/srun "
            "and set nworkers (LibeSpecs.nworkers or -n) to the number of sims in flight"
        )
    n = int(nworkers or libE_d.get("nworkers") or 1)
    if n < 1:
        raise GCOnlyConfigError(f"nworkers must be >= 1 in GC-only mode, got {n}")
    libE_d.update(nworkers=n, disable_resource_manager=True, comms="threads")
    return n


def _resume_plan(
    gc: GCOnlySpecs,
    gen_d: dict[str, t.Any],
    libE_d: dict[str, t.Any],
    exit_d: dict[str, t.Any],
    workflow_dir: pathlib.Path,
    H0_run: t.Any,
) -> tuple[t.Any, t.Any, t.Any, dict[str, t.Any]]:
    """Return ``(plan, journal state, H0, exit_criteria)``: for ``gc_specs.resume``, what the earlier run left."""
    from bundle.gconly.journal import JOURNAL_FILE, JournalState, load_journal
    from bundle.gconly.resume import plan_resume, remaining_exit_criteria, resume_dir

    plan = None
    journal_state = JournalState()
    if gc.resume:
        if gen_d.get("persis_in") and not gen_d.get("in"):
            raise GCOnlyConfigError(
                "gc_specs.resume: set gen_specs.inputs (gen_specs['in']), e.g. ['sim_id']: libEnsemble hands the "
                "saved rows (H0) to a persistent generator when it starts, and refuses rows with no fields"
            )
        rdir = resume_dir(gc.resume, workflow_dir)
        journal_state = load_journal(rdir / JOURNAL_FILE)
        plan = plan_resume(
            rdir, libE_d.get("H_file_prefix") or "libE_history", journal_state, H0_given=bool(len(H0_run))
        )
        H0_run = plan.H0
        exit_d = remaining_exit_criteria(exit_d, plan)
    return plan, journal_state, H0_run, exit_d


def _run_manager(
    manager_args: tuple[t.Any, ...],
    dispatcher: SimDispatcher,
    journal: t.Any,
    on_close: list[t.Callable[[], None] | None],
    workflow_dir: pathlib.Path,
) -> tuple[t.Any, dict[t.Any, t.Any], int]:
    """Run libEnsemble's manager; close the dispatcher and journal, then run ``on_close``, once, however it ends."""
    from libensemble.libE import manager

    from bundle.gconly.resume import find_saved_history

    closed = False

    def cleanup() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        dispatcher.close()
        if journal is not None:
            journal.close()
        for close in on_close:
            if close is not None:
                close()

    libE_d = manager_args[6]
    quiet = _QuietOnceStopped(dispatcher)
    handlers = _stderr_handlers()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        H, persis_out, flag = manager(*manager_args, on_cleanup=cleanup)
    except Exception as exc:  # LoggedException, or whatever libEnsemble's abort dump raised meanwhile
        _stop_generator_thread(exc)
        fatal = dispatcher.fatal
        saved = find_saved_history(workflow_dir, libE_d.get("H_file_prefix") or "libE_history")
        if isinstance(fatal, EndpointUnavailableError) and saved is not None:
            fatal = EndpointUnavailableError(
                f"{fatal}\nHistory saved in {saved.resolve()}; fix the cause and rerun with gc_specs.resume=True "
                "to continue.",
                endpoint=fatal.endpoint,
            )
        elif isinstance(fatal, SystematicSimError) and saved is not None:
            fatal = SystematicSimError(f"{fatal}\nHistory saved in {saved.resolve()}.", cause=fatal.cause)
        if fatal is not None:
            raise fatal from None
        raise
    finally:
        cleanup()
        for handler in handlers:
            handler.removeFilter(quiet)
    return H, persis_out, flag


class _QuietOnceStopped(logging.Filter):
    """Keep libEnsemble's own abort report off stderr once the run stopped with an error the bundle reports.

    When the dispatcher stops the run (fail-fast, an unavailable endpoint), libEnsemble's manager
    logs the exception's traceback and its abort lines, and the bundle then raises the same error
    to the caller: on the console the cause would appear several times.  ``ensemble.log`` keeps
    every record; only the stderr copies are dropped, and only after the bundle's error was set.
    """

    def __init__(self, dispatcher: SimDispatcher) -> None:
        super().__init__()
        self.dispatcher = dispatcher

    def filter(self, record: logging.LogRecord) -> bool:
        return self.dispatcher.fatal is None


def _stderr_handlers() -> list[logging.Handler]:
    """Return the console handlers libEnsemble's manager logging set up (not its log files)."""
    from libensemble.comms.logs import LogConfig

    logger = logging.getLogger(LogConfig.config.name)
    return [h for h in logger.handlers if type(h) is logging.StreamHandler]


def _user_function(sim_d: t.Mapping[str, t.Any]) -> t.Any:
    """Return the user's function of ``sim_specs``: ``sim_f``, or the gest-api ``simulator``."""
    return sim_d.get("simulator") or sim_d.get("sim_f")


REPORTED = (SystematicSimError, EndpointUnavailableError)
"""Errors that stop a run and say all there is to say: raised to the caller without the bundle's frames."""


def _stop_generator_thread(exc: BaseException, timeout: float = 10.0) -> None:
    """Stop the generator's thread of a manager that raised, so the calling script can exit.

    On an exception libEnsemble's manager still runs its final receive, which stops the
    generator; but when the endpoint is gone that receive raises too (the sims in flight never
    return), and the generator (worker 0, a non-daemon thread waiting for its next message)
    would keep the interpreter from exiting.  Answering the sims in flight instead would mark
    them ended in the saved history, so a resume would not rerun them.  The manager is
    found in the frames of the exception chain (``manager_main``'s ``mgr``); the generator is
    sent what a normal ending sends: ``PERSIS_STOP`` then ``STOP_TAG``.
    """
    import traceback

    from libensemble.manager import Manager
    from libensemble.message_numbers import MAN_SIGNAL_FINISH, MAN_SIGNAL_KILL, PERSIS_STOP, STOP_TAG

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for frame, _ in traceback.walk_tb(cur.__traceback__):
            mgr = frame.f_locals.get("mgr", frame.f_locals.get("self"))
            if not isinstance(mgr, Manager) or not mgr.libE_specs.get("gen_on_manager"):
                continue
            if mgr.wcomms is None:  # the manager's final receive completed: the generator was stopped
                return
            comm = mgr.wcomms[0]
            handle = getattr(comm, "handle", None)
            if handle is None or not handle.is_alive():
                return
            comm.send(PERSIS_STOP, MAN_SIGNAL_KILL)
            comm.send(STOP_TAG, MAN_SIGNAL_FINISH)
            handle.join(timeout)
            if handle.is_alive():
                log.warning("the generator did not stop within %g s of the abort; the script may not exit", timeout)
            return
        cur = cur.__context__ or cur.__cause__


def libE(
    sim_specs: t.Any,
    gen_specs: t.Any = None,
    exit_criteria: t.Any = None,
    persis_info: dict[t.Any, t.Any] | None = None,
    alloc_specs: t.Any = None,
    libE_specs: t.Any = None,
    H0: npt.NDArray[t.Any] | None = None,
    *,
    gc_specs: GCOnlySpecs | t.Mapping[str, t.Any] | None = None,
) -> tuple[npt.NDArray[t.Any], dict[t.Any, t.Any], int]:
    """Run ``libE()``, in GC-only mode when ``sim_specs.globus_compute_endpoint`` is set.

    Otherwise libEnsemble's own ``libE()`` runs, with each sim's return checked against
    ``sim_specs["out"]`` where the sim runs (:class:`~bundle.gconly.normalize.CheckedSim`).

    Parameters
    ----------
    sim_specs, gen_specs, exit_criteria, persis_info, alloc_specs, libE_specs, H0
        As for ``libensemble.libE.libE``.
    gc_specs : GCOnlySpecs or dict, optional
        GC-only options: ``user_endpoint_config``, ``template``, ``batch_size``,
        ``local_options``, ``poll_interval``, ``resume``, ``result_timeout``, ``offline_timeout``,
        ``require_online``, ``fail_fast``.
        Refused when GC-only mode is off.

    Returns
    -------
    tuple
        ``(H, persis_info, exit_flag)``.  Failed sims are ``TASK_FAILED`` in ``libE_stats.txt``,
        their error text in ``ensemble.log`` and in ``<workflow dir>/gconly_sim_errors/sim_<id>.txt``.

    Examples
    --------
    >>> H, persis_info, flag = libE(sim_specs, gen_specs, {"sim_max": 100}, persis_info,
    ...                             libE_specs={"nworkers": 8}, gc_specs={"batch_size": 4})  # doctest: +SKIP
    """
    if not gc_endpoint_of(sim_specs):
        if gc_specs is not None:
            raise GCOnlyConfigError("gc_specs given but sim_specs.globus_compute_endpoint is not set")
        from libensemble import specs as lspecs
        from libensemble.libE import libE as stock_libE

        from bundle.gconly.normalize import checked_sim_specs

        kwargs: dict[str, t.Any] = {"persis_info": {} if persis_info is None else persis_info, "H0": H0}
        if alloc_specs is not None:
            kwargs["alloc_specs"] = alloc_specs
        if libE_specs is not None:
            kwargs["libE_specs"] = libE_specs
        gen = lspecs.GenSpecs() if gen_specs is None else gen_specs
        from libensemble.manager import LoggedException

        from bundle.gconly.stopped import off_console_once_explained, stopped_by, workflow_dir_of

        checked = checked_sim_specs(sim_specs)  # each sim's return is checked where it runs
        try:
            with off_console_once_explained():
                result: tuple[npt.NDArray[t.Any], dict[t.Any, t.Any], int] = stock_libE(
                    checked, gen, exit_criteria, **kwargs
                )
        except LoggedException as err:
            stopped = stopped_by(err, workflow_dir_of(libE_specs))
            if stopped is None:
                raise
            raise stopped from None  # the message says it all: no traceback of libEnsemble's
        return result
    try:
        H, persis_out, flag, _, _ = run_gconly(
            sim_specs, gen_specs, exit_criteria, persis_info, alloc_specs, libE_specs, H0, gc_specs=gc_specs
        )
    except REPORTED as err:  # the message says it all: raised without the bundle's frames
        raise err.with_traceback(None) from None
    return H, persis_out, flag
