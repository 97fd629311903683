"""Run one real Globus Compute engine inside this process.

An :class:`EngineHost` is what a user endpoint process is to a
template-capable endpoint: one engine, built from one rendered template, fed
packed tasks and answering with packed results.  It adds what a driver needs
and the engine lacks: a bounded wait for the workers to start, the orphaned
processes of a lost local worker pool stopped, and a shutdown that leaves no
process behind.  Replacing a lost block is the engine's own doing, as on a site
endpoint: the templates set ``block_error_handler: false``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import typing as t
import uuid

from bundle.endpoints.local import reaper
from bundle.endpoints.local.blocks import BlockWatch, LostBlock
from bundle.endpoints.templates import EndpointTemplate
from bundle.errors import EndpointShutdownError, EndpointStartError
from bundle.processes import proctree

if t.TYPE_CHECKING:
    from globus_compute_endpoint.engines import GlobusComputeEngine
    from globus_compute_endpoint.engines.base import GCFuture

log = logging.getLogger(__name__)

_ERR_TAIL_LINES = 25

_OWN_SESSION = (
    "import os, signal, sys; os.setsid(); "
    "[signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]; "
    "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)]; "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM}); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
"""Run a command in a session (and process group) of its own, keeping its pid: ``python -c _OWN_SESSION cmd...``.

It starts with SIGINT and SIGTERM blocked (see :meth:`EngineHost._own_session_for_interchange`); once out of the
terminal's process group it discards any that arrived meanwhile (ignoring a signal drops it if pending), restores
their default action and unblocks them, then runs the command.
"""

_UNIX_SOCKET_PATH_MAX = 100
"""A little under Linux's 108 bytes for a Unix socket's path."""

_CANCEL_COMMANDS = {"SlurmProvider": "scancel", "PBSProProvider": "qdel", "TorqueProvider": "qdel"}
"""Batch providers whose jobs the watcher can cancel if the driver dies, and the command it runs."""


def _ensure_bin_dir_on_path() -> None:
    """Put this interpreter's ``bin`` folder on PATH.

    The engine starts its interchange and worker pool with the
    ``globus-compute-endpoint`` command, and a pip-installed MPICH puts
    ``mpiexec`` beside it; in a virtual environment that was not activated
    neither is on PATH.
    """
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")


def _own_import_path() -> str:
    """Return the driver's own ``sys.path`` folders, for the workers' ``PYTHONPATH``.

    A function defined in a module of the user's (not in ``__main__``) is
    serialized by reference, so the worker must import that module.  Remote
    endpoints need it installed; the local endpoint runs on the driver's
    filesystem, so its workers get the driver's own folders (the script's
    folder, ``PYTHONPATH``; not the interpreter's or site-packages).

    Returns
    -------
    str
        Folders joined with ``os.pathsep`` (empty when there are none).
    """
    system = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    own = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(path) or "site-packages" in path or "dist-packages" in path:
            continue
        if any(path == root or path.startswith(root + os.sep) for root in system):
            continue
        own.append(path)
    return os.pathsep.join(dict.fromkeys(own))


def _tail(path: pathlib.Path, lines: int = _ERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _fail_pending(pending: t.Iterable[GCFuture], error: BaseException) -> None:
    """Fail the futures still waiting, with ``error`` (one that got its result meanwhile keeps it)."""
    for fut in pending:
        if not fut.done():
            try:
                fut.set_exception(error)
            except Exception:  # raced with a result
                pass


class EngineHost:
    """One started engine, its start watchdog, and its clean shutdown.

    Parameters
    ----------
    template : EndpointTemplate
        The template to render.
    options : dict
        The user options (``user_endpoint_config``), already validated.
    run_dir : pathlib.Path
        Folder for the engine's logs, submit scripts and task working dir.
    start_timeout : float
        Seconds the worker pool has to connect before pending and new tasks
        fail with :class:`~bundle.errors.EndpointStartError`.
    """

    def __init__(
        self,
        template: EndpointTemplate,
        options: dict[str, t.Any],
        run_dir: pathlib.Path,
        start_timeout: float = 60.0,
    ) -> None:
        self.template = template
        self.options = options
        self.run_dir = run_dir
        self.start_timeout = start_timeout
        self.endpoint_id = uuid.uuid4()
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._pending: dict[uuid.UUID, GCFuture] = {}
        self._watchdog: threading.Thread | None = None
        self._registered_jobs: set[str] = set()
        self._block_watch: BlockWatch | None = None
        self._removed_at_shutdown: list[pathlib.Path] = []
        self._root_starts: dict[int, float | None] = {}
        config = template.load(options)
        self.engine: GlobusComputeEngine = config.engine
        self.is_mpi = type(self.engine).__name__ == "GlobusMPIEngine"
        self.started_at = 0.0
        self._own_session_for_interchange()

    def _own_session_for_interchange(self) -> None:
        """Start the interchange in a session of its own, as the worker pools already are.

        A terminal's Ctrl-C goes to its whole foreground process group; the interchange would die of
        it while the driver still waits on its tasks.  Out of that group, the driver's interrupt
        handler (:mod:`bundle.processes.interrupt`) stops it in order.  ``os.setsid`` then ``exec``
        keeps the pid Parsl knows.
        """
        executor = getattr(self.engine, "executor", None)
        command = list(getattr(executor, "interchange_launch_cmd", None) or [])
        if executor is None or not command or _OWN_SESSION in command:
            return
        executor.interchange_launch_cmd = [sys.executable, "-c", _OWN_SESSION, *command]
        # Until the new process has left the terminal's group, a Ctrl-C would reach it while Python starts
        # (seen: "Fatal Python error: init_import_site ... KeyboardInterrupt").  Parsl starts it from this
        # method; the thread that calls it blocks both signals meanwhile, and the child inherits the mask.
        start = getattr(executor, "_start_local_interchange_process", None)
        if start is None:
            return

        def start_with_signals_blocked() -> None:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)

        executor._start_local_interchange_process = start_with_signals_blocked

    def start(self) -> None:
        """Start the engine (interchange and one block of workers)."""
        _ensure_bin_dir_on_path()
        self._share_import_path()
        reaper.ensure_watcher()
        self._private_tmpdir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting %s from template %r in %s", type(self.engine).__name__, self.template.name, self.run_dir)
        self.started_at = time.monotonic()
        self.engine.start(endpoint_id=self.endpoint_id, run_dir=str(self.run_dir))
        for pid in self._root_pids():
            reaper.register(pid)
        self._register_batch_jobs()
        self._watchdog = threading.Thread(target=self._watch_start, name="libe-gc-start-watchdog", daemon=True)
        self._watchdog.start()

    def _share_import_path(self) -> None:
        """Put the driver's own import folders on the workers' ``PYTHONPATH`` (through ``worker_init``)."""
        paths = _own_import_path()
        provider = getattr(getattr(self.engine, "executor", None), "provider", None)
        if not paths or provider is None or not hasattr(provider, "worker_init"):
            return
        export = f'export PYTHONPATH={shlex.quote(paths)}"${{PYTHONPATH:+:$PYTHONPATH}}"'
        provider.worker_init = f"{export}\n{provider.worker_init or ''}"

    def _private_tmpdir(self) -> None:
        """Give the blocks a ``TMPDIR`` of their own, removed at shutdown.

        Parsl's worker pool starts a ``multiprocessing`` manager, whose listener socket lives in a
        ``pymp-*`` folder of ``TMPDIR``; the pool is stopped by a signal.  Every template's prelude
        gives a one-node block a folder of its own in ``TMPDIR``, removed by the block's shell when it
        ends; the folder made here holds those, and is removed also where the blocks were killed
        (SIGKILL, a killed driver) and their shells could not remove theirs.  It is ``tmp`` in the run
        folder, or a new short folder in ``TMPDIR`` when that path would be too long for a Unix socket
        (about 100 bytes, the block's folder and the listener's name included), or nothing when that
        too would be too long.  Where the folder cannot be made (a node that does not see it),
        ``TMPDIR`` stays as it was.
        """
        provider = getattr(getattr(self.engine, "executor", None), "provider", None)
        if provider is None or not hasattr(provider, "worker_init"):
            return

        def fits(path: str) -> bool:  # the template's prelude makes the block's own folder inside it
            return len(path) + len("/libe-gc-123456/pymp-12345678/listener-12345678") < _UNIX_SOCKET_PATH_MAX

        folder = self.run_dir / "tmp"
        if not fits(str(folder)):
            if not fits(os.path.join(tempfile.gettempdir(), "libe-gc-tmp-12345678")):
                return  # even a new folder in TMPDIR would be too long: leave TMPDIR as it is
            folder = pathlib.Path(tempfile.mkdtemp(prefix="libe-gc-tmp-"))
            self._removed_at_shutdown.append(folder)
            reaper.register_folder(folder)  # removed by the watcher too if the driver is killed
        quoted = shlex.quote(str(folder))
        provider.worker_init = f"mkdir -p {quoted} 2>/dev/null && export TMPDIR={quoted}\n{provider.worker_init or ''}"

    def _remove_own_folders(self) -> None:
        for folder in self._removed_at_shutdown:
            shutil.rmtree(folder, ignore_errors=True)

    def submit(
        self, task_id: uuid.UUID, function_id: str | None, packed_task: bytes, spec: dict[str, t.Any]
    ) -> GCFuture:
        """Hand a packed task to the engine.

        Parameters
        ----------
        task_id : uuid.UUID
            The task's id.
        function_id : str or None
            The registered function's id.
        packed_task : bytes
            A messagepack ``Task``.
        spec : dict
            The task's ``resource_specification``, as the endpoint's interchange passes it.

        Returns
        -------
        GCFuture
            Resolves to the packed ``Result`` (or an exception if the engine failed).
        """
        from globus_compute_endpoint.engines.base import GCFuture

        fut = GCFuture(task_id, function_id=function_id)
        with self._lock:
            if self.failure is not None:
                fut.set_exception(self.failure)
                return fut
            if self._stop.is_set():
                fut.set_exception(EndpointShutdownError("the local endpoint is shut down"))
                return fut
            self._pending[task_id] = fut
            fut.add_done_callback(lambda f: self._pending.pop(task_id, None))
            try:
                self.engine.submit(task_f=fut, packed_task=packed_task, resource_specification=spec)
            except Exception as exc:
                # As the endpoint's interchange does: a task the engine cannot take comes back failed.
                from globus_compute_common.messagepack import pack
                from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails
                from globus_compute_endpoint.exception_handling import get_result_error_details

                code, msg = get_result_error_details(exc)
                fut.set_result(
                    pack(
                        Result(
                            task_id=task_id,
                            data=f"Failed to start task: {exc}",
                            error_details=ResultErrorDetails(code=code, user_message=msg),
                            task_statuses=[],
                        )
                    )
                )
        return fut

    def _block_diagnostics(self) -> str:
        """Collect the error output of the engine's blocks, for error messages."""
        script_dir = self.run_dir / "submit_scripts"
        parts = []
        for err in sorted([*script_dir.glob("*.err"), *script_dir.glob("*.stderr")]):
            text = _tail(err)
            if text.strip():
                parts.append(f"--- {err} ---\n{text}")
        if not parts:
            parts.append(f"(no worker pool error output yet; see {script_dir} and {self.run_dir})")
        return "\n".join(parts)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self.failure = exc
            pending = list(self._pending.values())
        log.error("%s", exc)
        _fail_pending(pending, exc)

    def _failed_start(self, executor: t.Any) -> str:
        """Describe the blocks that ended FAILED before any block connected (empty when none did).

        With ``block_error_handler: false`` (the templates' setting) Parsl keeps launching blocks
        that cannot start, and the tasks wait; a site endpoint does the same.  The local endpoint
        says so at once instead, with the blocks' error output, and stops the engine's scaling.
        """
        from parsl.jobs.states import JobState

        failed = []
        for block_id, status in list(executor.status_facade.items()):
            if status.state in (JobState.FAILED, JobState.MISSING):
                code = f" with exit code {status.exit_code}" if status.exit_code is not None else ""
                why = f": {status.message}" if status.message else ""
                failed.append(f"block {block_id} ended {status.state.name}{code}{why}")
        return "; ".join(failed)

    def _watch_start(self) -> None:
        """Fail pending and new tasks if the workers never connect.

        ``start_timeout`` counts from the launch of the first block: Parsl's job status poller
        launches it one ``strategy_period`` after the engine has started (the interchange's own
        start-up can take seconds on a loaded host), and the block's error output, which the
        error message carries, exists only from then on.  A block that is never launched fails
        the tasks once ``start_timeout`` plus that period have passed since the engine started.
        A block that ends FAILED before any has connected fails them at once.
        """
        executor = self.engine.executor
        watch_from = time.monotonic()
        launch_period = float(getattr(self.engine, "_job_status_kwargs", {}).get("strategy_period", 5.0))
        launched_at: float | None = None
        while not self._stop.wait(0.5):
            if launched_at is None and getattr(executor, "blocks_to_job_id", None):
                launched_at = time.monotonic()
                log.debug("first block launched %.1f s after the engine started", launched_at - self.started_at)
            proc = executor.interchange_proc
            if proc is not None and proc.poll() is not None:
                self._fail(EndpointStartError(f"the local endpoint's interchange exited with code {proc.returncode}"))
                return
            if executor.bad_state_is_set:
                # Parsl has already failed every task with the block's error output.
                self._fail(EndpointStartError(f"the local endpoint's workers failed: {executor.executor_exception}"))
                return
            self._register_batch_jobs()
            try:
                if executor.connected_blocks():
                    # First look at the blocks' processes before any task can run on them.
                    self._block_watch = BlockWatch(executor.provider)
                    try:
                        self._block_watch.check()
                    except Exception:  # a /proc race: the watch loop looks again
                        log.debug("block watch failed", exc_info=True)
                    self.ready.set()
                    log.info("local endpoint workers connected after %.1f s", time.monotonic() - self.started_at)
                    break
            except Exception as err:  # the command channel broke: treat as a start failure
                self._fail(EndpointStartError(f"the local endpoint's interchange does not answer: {err}"))
                return
            failed = self._failed_start(executor)
            if failed:
                error = EndpointStartError(
                    f"the local endpoint's workers failed to start (template {self.template.name!r}): {failed}\n"
                    f"{self._block_diagnostics()}"
                )
                # Parsl's hook for error handlers: the engine launches no more blocks and fails its tasks.
                executor.set_bad_state_and_fail_all(error)
                self._fail(error)
                return
            now = time.monotonic()
            if launched_at is None:
                timed_out = now - watch_from > self.start_timeout + launch_period
                where = "(no block of workers was launched)"
            else:
                timed_out = now - launched_at > self.start_timeout
                where = "of their block's launch"
            if timed_out:
                self._fail(
                    EndpointStartError(
                        f"the local endpoint's workers did not connect within {self.start_timeout:g} s {where} "
                        f"(template {self.template.name!r}); a worker_init that hangs or a missing "
                        f"launcher are the usual causes.\n{self._block_diagnostics()}"
                    )
                )
                return
        self._watch_running()

    def _watch_running(self, period: float = 0.5) -> None:
        """Stop what a lost local block leaves running; register later batch jobs with the watcher."""
        executor = self.engine.executor
        batch = type(executor.provider).__name__ in _CANCEL_COMMANDS
        if self._block_watch is None:
            self._block_watch = BlockWatch(executor.provider)
        last_registered = time.monotonic()
        while not self._stop.wait(period):
            self._root_pids()  # note new blocks' shells while they are surely theirs
            try:
                self._block_watch.check()  # a block stopped by shutdown is marked cancelled and skipped
            except Exception:  # never let the watch thread die on a /proc race
                log.debug("block watch failed", exc_info=True)
            # Blocks submitted later (scaling out, replacing a lost or idle-cancelled job) are batch jobs too.
            if batch and time.monotonic() - last_registered >= 5.0:
                last_registered = time.monotonic()
                self._register_batch_jobs()

    @property
    def lost_blocks(self) -> list[LostBlock]:
        """Blocks whose worker pool exited while the engine was running (see :mod:`bundle.endpoints.local.blocks`)."""
        return list(self._block_watch.lost) if self._block_watch is not None else []

    def _batch_jobs(self, active_only: bool = True) -> list[str]:
        """Ids of the jobs a batch-scheduler provider holds (none for a LocalProvider)."""
        provider = self.engine.executor.provider
        if type(provider).__name__ not in _CANCEL_COMMANDS:
            return []
        jobs = []
        for job_id, job in list(getattr(provider, "resources", {}).items()):
            status = job.get("status")
            if active_only and status is not None and status.terminal:
                continue
            jobs.append(str(job_id))
        return jobs

    def _register_batch_jobs(self) -> None:
        """Have the watcher cancel this engine's batch jobs if the driver dies."""
        provider = self.engine.executor.provider
        command = _CANCEL_COMMANDS.get(type(provider).__name__)
        if command is None:
            return
        for job_id in self._batch_jobs(active_only=False):
            if job_id not in self._registered_jobs:
                self._registered_jobs.add(job_id)
                try:
                    reaper.register_cancel([command, job_id])
                except (OSError, ValueError):
                    log.warning("could not register batch job %s with the watcher", job_id, exc_info=True)

    def _cancel_batch_jobs(self) -> None:
        """Cancel batch jobs still queued or running (engine shutdown skips them in a bad state)."""
        jobs = self._batch_jobs()
        if not jobs:
            return
        log.info("cancelling batch jobs %s", ", ".join(jobs))
        try:
            self.engine.executor.provider.cancel(jobs)
        except Exception:
            log.exception("cancelling batch jobs %s failed", jobs)

    def _root_pids(self) -> list[int]:
        """Pids of the interchange and of the blocks' shells that are still the processes first seen.

        A block's shell may have ended long before (scaled in, lost) and, with Linux's 32768 pids
        on a busy host, its pid may name another process by now, another engine's worker pool
        say: signalling it would kill that engine's tasks (``ManagerLost``).  Each root's start
        time is recorded when it is first seen (at start, then every half second by the watch
        thread), and a pid whose process started at another time is left out.
        """
        roots: list[int] = []
        proc = getattr(self.engine.executor, "interchange_proc", None)
        if proc is not None:
            roots.append(proc.pid)
        provider = self.engine.executor.provider
        for job in getattr(provider, "resources", {}).values():
            if job.get("remote_pid"):
                roots.append(int(job["remote_pid"]))
        with self._lock:
            for pid in roots:
                if pid not in self._root_starts:
                    self._root_starts[pid] = proctree.start_time(pid)
            return [pid for pid in roots if proctree.same_process(pid, self._root_starts[pid])]

    def shutdown(self) -> None:
        """Stop the engine and make sure none of its processes is left."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            pending = list(self._pending.values())
        pids = proctree.descendants(self._root_pids())  # before shutdown, while the tree is intact
        try:
            self.engine.shutdown(block=True)
        except Exception:
            log.exception("engine shutdown raised; stopping its processes directly")
        self._cancel_batch_jobs()
        proctree.terminate(pids, grace=3.0)
        self._remove_own_folders()
        _fail_pending(pending, EndpointShutdownError("the local endpoint was shut down before this task finished"))

    def stop_now(self, kill: bool = False) -> None:
        """Stop the engine at once, for an interrupted run: processes first, then the engine's threads.

        Unlike :meth:`shutdown`, no block is scaled in through the interchange (which may be gone or
        still starting): batch jobs are cancelled, the engine is marked failed so it launches no new
        block, its process trees are stopped, and the engine's own shutdown gets a few seconds.

        Parameters
        ----------
        kill : bool
            SIGKILL at once (a second Ctrl-C) instead of SIGTERM with a short grace.
        """
        with self._lock:
            already = self._stop.is_set()
            self._stop.set()
            pending = list(self._pending.values())
        if already and not kill:
            return
        executor = self.engine.executor
        error = EndpointShutdownError("the run was interrupted; the local endpoint was stopped")
        try:
            if getattr(executor, "_executor_bad_state", None) is not None and not executor.bad_state_is_set:
                executor.set_bad_state_and_fail_all(error)  # the job status poller launches no block from here on
        except Exception:
            log.debug("marking the engine stopped failed", exc_info=True)
        if not kill:
            self._stop_launching()
        pids = proctree.descendants(self._root_pids())  # after the last launch: a block started now is in here
        self._cancel_batch_jobs()
        proctree.terminate(pids, grace=0.0 if kill else 2.0)
        self._remove_own_folders()
        _fail_pending(pending, error)
        if kill:
            return
        closer = threading.Thread(target=self._close_engine, name="libe-gc-engine-close", daemon=True)
        closer.start()
        closer.join(3.0)

    def _stop_launching(self, timeout: float = 3.0) -> None:
        """Wait (briefly) for the engine's job status poller to stop: a poll in progress may still launch a block."""
        poller = getattr(self.engine, "job_status_poller", None)
        if poller is None:
            return
        closer = threading.Thread(target=poller.close, name="libe-gc-poller-close", daemon=True)
        closer.start()
        closer.join(timeout)
        if not closer.is_alive():
            self.engine.job_status_poller = None  # closed: the engine's own shutdown need not close it again

    def _close_engine(self) -> None:
        try:
            self.engine.shutdown(block=True)
        except Exception:
            log.debug("engine shutdown after an interrupt raised", exc_info=True)
