"""``GlobusComputeTask``: a libEnsemble :class:`~libensemble.executors.executor.Task` backed by a Globus Compute future.

State follows libEnsemble's words: ``CREATED`` before submission, ``WAITING``
once submitted, ``RUNNING`` once the app's stdout file appears in its working
directory (the endpoint opens it when the app starts; seen only where driver and
endpoint share a filesystem), then ``FINISHED``, ``FAILED`` or ``USER_KILLED``.

``runtime`` counts from the app's start, as ``MPIExecutor``'s does from launch: 0 while the task
waits (for the endpoint's workers, a free node, the batch queue), then the time since it was seen
``RUNNING``, and once finished the app's own run time as the endpoint measured it.  The time since
submission is :attr:`GlobusComputeTask.time_since_submit` (``total_time`` once finished).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
import typing as t

from libensemble.executors.executor import Application, Task, TimeoutExpired, jassert

from bundle.endpoints.health import EndpointHealth, health_of
from bundle.errors import BlockLostError, TaskPendingTimeoutError, block_lost_message, lost_worker_pool
from bundle.executor.remote import KILL_FILE

if t.TYPE_CHECKING:
    from bundle.executor.scripts import Script

log = logging.getLogger(__name__)

KINDS = ("mpi", "shell", "python")

HEALTH_STEP = 1.0
"""Longest sleep of :meth:`GlobusComputeTask.wait` on a cloud endpoint between looks at its health."""


class GlobusComputeTask(Task):  # type: ignore[misc]  # libensemble is untyped
    """A task submitted through :class:`~bundle.executor.GlobusComputeExecutor`.

    Parameters
    ----------
    app : Application
        The registered app (a throw-away one for ``submit(func=...)``).
    app_args : str, optional
        Arguments of an MPI or shell app.
    workdir : str, optional
        Where the app runs and its ``stdout`` / ``stderr`` files land.
    stdout, stderr : str, optional
        Output file names, relative to ``workdir`` (default ``<task name>.out`` / ``.err``).
    workerid : int, optional
        The libEnsemble worker submitting the task.
    dry_run : bool
        Build the launch line without running anything.
    kind : {"mpi", "shell", "python"}
        How the task runs on the endpoint.
    local : bool
        True when the endpoint runs on this host.
    shared_fs : bool
        True when the endpoint sees ``workdir`` as this process does (its files are read here, and
        :meth:`kill` reaches the app through a file there).

    Attributes
    ----------
    future : concurrent.futures.Future or None
        The Globus Compute future, once submitted.
    resource_specification : dict or None
        The normalized specification the task was submitted with.
    shell_result : ShellResult or None
        For apps: the endpoint's result (command, output snippets, return code).
    runline : str
        The launch line: composed at submit (node names are placeholders until the endpoint picks the
        nodes, unless the driver runs in the allocation), then, once an MPI app has run, the launcher
        line the endpoint actually used for the nodes it gave the task.
    app_line : str or None
        The app and its arguments as run after the launcher (None for Python tasks).
    error : BaseException or None
        Why the task failed, when it did not get as far as a return code.
    pending_timeout : float or None
        Seconds the endpoint has to start the task (see ``GlobusComputeExecutor(pending_timeout=...)``).
    offline_timeout : float or None
        Seconds a cloud endpoint may be reported offline while the task waits (see
        ``GlobusComputeExecutor(offline_timeout=...)``).
    """

    state: str
    finished: bool
    success: bool
    errcode: int | None
    runtime: float
    total_time: float | None
    submit_time: float | None

    def __init__(
        self,
        app: Application,
        app_args: str | None = None,
        workdir: str | None = None,
        stdout: str | None = None,
        stderr: str | None = None,
        workerid: int | None = None,
        dry_run: bool = False,
        *,
        kind: str = "mpi",
        local: bool = False,
        shared_fs: bool = True,
    ) -> None:
        jassert(kind in KINDS, f"task kind must be one of {KINDS}, not {kind!r}")
        super().__init__(app, app_args, workdir, stdout, stderr, workerid, dry_run)
        self.kind = kind
        self.local = local
        self.shared_fs = shared_fs
        self.marker = f"{os.getpid()}-{self.id}-{id(self):x}"
        self.future: concurrent.futures.Future[t.Any] | None = None
        self.resource_specification: dict[str, t.Any] | None = None
        self.shell_result: t.Any = None
        self.error: BaseException | None = None
        self.pending_timeout: float | None = None
        self.offline_timeout: float | None = None
        self.health: EndpointHealth | None = None
        self.endpoint_label = ""
        self.app_line: str | None = None
        self.endpoint_executor: t.Any = None
        self._value: t.Any = None
        self.script: Script | None = None
        """For ``submit(func=ShellFunction(...) / MPIFunction(...))``: the script, run as written."""
        self._running_since: float | None = None
        """``time.time()`` here when the task was first seen ``RUNNING``."""
        self._app_times: tuple[float, float] | None = None
        """The app's start and end, ``time.time()`` on the endpoint (from the result)."""
        self._finished_at: float | None = None

    # --- submission -----------------------------------------------------------------

    def _submitted(self, future: concurrent.futures.Future[t.Any], endpoint_executor: t.Any = None) -> None:
        """Record the future of a task that has just been submitted (and the executor that holds it)."""
        self.endpoint_executor = endpoint_executor
        self.health = None if endpoint_executor is None else health_of(endpoint_executor)
        self.future = future
        self.process = future  # libEnsemble code checks ``task.process`` to see that a task was launched
        self.state = "WAITING"
        self.timer.start()
        self.submit_time = self.timer.tstart

    @property
    def gc_task_id(self) -> str | None:
        """The Globus Compute task id (None until the endpoint has assigned one)."""
        return getattr(self.future, "task_id", None)

    # --- status ---------------------------------------------------------------------

    @property
    def time_since_submit(self) -> float:
        """Seconds since the task was submitted (until it finished; 0 before submission).

        Returns
        -------
        float
            The waiting and the running time together; ``runtime`` is the running time alone.
        """
        if self.submit_time is None:
            return 0.0
        if self.total_time is not None:
            return float(self.total_time)
        return float(self.timer.elapsed)

    def _app_runtime(self) -> float:
        """Seconds the app has run: as measured on the endpoint once known, else since seen running, else 0."""
        if self._app_times is not None:
            started, ended = self._app_times
            return max(0.0, ended - started)
        if self._running_since is not None:
            until = self._finished_at if self._finished_at is not None else time.time()
            return max(0.0, until - self._running_since)
        return 0.0

    def calc_task_timing(self) -> None:
        """Set ``total_time`` (since submission, as libEnsemble's tasks) and ``runtime`` (since the app started)."""
        if self.submit_time is None:
            super().calc_task_timing()  # logs that the submit time is not set
            return
        if self.total_time is None:
            self.timer.stop()
            self.total_time = self.timer.elapsed
            self._finished_at = time.time()
        self.runtime = self._app_runtime()

    def _take_app_times(self, value: t.Any) -> None:
        """Read the app's start and end from the runner's result (absent when the app never ran)."""
        started, ended = getattr(value, "app_started", None), getattr(value, "app_ended", None)
        if isinstance(started, float) and isinstance(ended, float):
            self._app_times = (started, ended)

    def _check_poll(self) -> bool:
        """Whether there is a future to look at; a dry run completes here, a finished task has nothing to do."""
        if self.dry_run:
            self._set_complete()
            return False
        if self.finished:  # also a task that failed to start: it has no future, and nothing to wait for
            return False
        jassert(self.future is not None, f"task {self.name} has not been submitted")
        return True

    def _started(self) -> bool:
        """Whether the app has started: its stdout file exists (shared filesystems only)."""
        if self.kind == "python" or not self.workdir:
            return False
        return os.path.exists(os.path.join(self.workdir, self.stdout))

    def _set_complete(self) -> None:
        """Take the final state from the finished future."""
        if self.dry_run:
            super()._set_complete()
            return
        if self.finished:
            return
        assert self.future is not None
        self.finished = True
        try:
            value = self.future.result(timeout=0)
        except concurrent.futures.CancelledError:
            self.calc_task_timing()
            self.state = "USER_KILLED"
            return
        except BaseException as err:  # the remote error, a lost task or a stopped endpoint
            self.calc_task_timing()
            refusal = self.health.record(err) if self.health is not None else None
            if refusal is not None:  # the endpoint could not start a user endpoint for this configuration
                err = refusal
            elif lost_worker_pool(err) and not isinstance(err, BlockLostError):
                lost = BlockLostError(block_lost_message(f"task {self.name}", err))
                lost.__cause__ = err
                err = lost
            self.error = err
            self.state = "FAILED"
            self.success = False
            log.info("Task %s failed: %s", self.name, _last_line(err))
            return
        if self.kind == "python":
            self._value, started, ended = value  # run_python's (value, started, ended)
            self._app_times = (float(started), float(ended))
            self.calc_task_timing()
            self.errcode = 0
        else:
            self._take_app_times(value)
            self.calc_task_timing()
            self.shell_result = value
            prefix = getattr(value, "launch_prefix", None)
            if self.kind == "mpi" and prefix and self.script is not None:
                self.runline = self.script.with_prefix(prefix)  # the script with the launcher line it ran
            elif self.kind == "mpi" and prefix and self.app_line is not None:
                # What ran: the launcher line the endpoint composed for the nodes it gave this task.
                self.runline = f"{prefix} {self.app_line}"
            code = getattr(value, "returncode", None)
            self.errcode = code if isinstance(code, int) else None
            if self.shared_fs and self.stdout_exists() and hasattr(value, "stdout"):
                value.stdout = value.stderr = ""  # the files hold the output: keep no second copy in memory
        self.success = self.errcode == 0
        self.state = "FINISHED" if self.success else "FAILED"
        log.info("Task %s finished with errcode %s (%s)", self.name, self.errcode, self.state)

    def poll(self) -> None:
        """Update ``state``, ``runtime`` and, once done, ``errcode`` and ``success``."""
        if not self._check_poll():
            return
        assert self.future is not None
        if self.future.done():
            self._set_complete()
            return
        if self.state == "WAITING" and self._started():
            self.state = "RUNNING"
            self._running_since = time.time()
        self.runtime = self._app_runtime()
        if self.state == "WAITING" and self._pending_left() == 0.0:
            self._give_up_pending()
        elif self.health is not None:
            gone = self.health.check(self.offline_timeout)
            if gone is not None:
                self._give_up(gone)

    def _give_up(self, err: BaseException) -> None:
        """Fail a task that can no longer end on its own (its endpoint is gone), and withdraw its future."""
        from bundle.endpoints.unsent import withdraw

        assert self.future is not None
        withdraw(self.endpoint_executor, self.future)
        self.error = err
        self.finished = True
        self.success = False
        self.state = "FAILED"
        self.calc_task_timing()
        log.warning("task %s failed: %s", self.name, err)

    def _pending_left(self) -> float | None:
        """Seconds left before an unstarted task counts as failed (None: no bound)."""
        if self.pending_timeout is None:
            return None
        return max(0.0, self.pending_timeout - float(self.timer.elapsed))

    def _give_up_pending(self) -> None:
        """Fail a task the endpoint has not started within ``pending_timeout``, and cancel its future."""
        from bundle.endpoints.unsent import withdraw

        assert self.future is not None
        withdraw(self.endpoint_executor, self.future)
        self.error = TaskPendingTimeoutError(
            f"task {self.name} was not started by endpoint {self.endpoint_label or '?'} within "
            f"pending_timeout={self.pending_timeout:g} s: the endpoint may be offline or unreachable, or its "
            "batch job still queued (check it with 'globus-compute-endpoint list' where it runs, or raise "
            "pending_timeout)"
        )
        self.finished = True
        self.success = False
        self.state = "FAILED"
        self.calc_task_timing()
        log.warning("%s", self.error)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the task to end.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; the task is not killed when they run out.

        Raises
        ------
        TimeoutExpired
            libEnsemble's exception, when the task is still going after ``timeout`` seconds.
        """
        if not self._check_poll():
            return
        assert self.future is not None
        asked = timeout
        while True:
            pending = self._pending_left() if self.state == "WAITING" else None
            step = timeout if pending is None else (pending if timeout is None else min(timeout, pending))
            if self.health is not None:  # wake up now and then to hear whether the endpoint is still there
                step = HEALTH_STEP if step is None else min(step, HEALTH_STEP)
            start = float(self.timer.elapsed)
            try:
                concurrent.futures.wait([self.future], timeout=step)
            finally:
                self.poll()
            if self.finished or self.future.done():
                break
            if timeout is not None:
                timeout = max(0.0, timeout - (float(self.timer.elapsed) - start))
                if timeout == 0.0:
                    raise TimeoutExpired(self.name, asked)
        self._set_complete()

    def result(self, timeout: float | None = None) -> t.Any:
        """Wait for the task, then return what it produced.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait (``TimeoutExpired`` after that).

        Returns
        -------
        object
            For an MPI or shell app, the final ``state`` as libEnsemble's ``Task.result`` does; for a
            Python task, the function's return value.

        Raises
        ------
        Exception
            For a Python task that failed, its error (the remote traceback rides along).
        """
        self.wait(timeout=timeout)
        if self.kind != "python":
            return self.state
        if self.error is not None:
            raise self.error
        if self.state == "USER_KILLED":
            raise concurrent.futures.CancelledError(f"task {self.name} was killed")
        return self._value

    # --- output ---------------------------------------------------------------------

    def _read(self, which: str) -> str:
        name = self.stdout if which == "stdout" else self.stderr
        if self.kind == "python":
            raise ValueError(f"task {self.name} runs a Python function: it has no {which} file (use result())")
        if self.workdir and os.path.exists(os.path.join(self.workdir, name)):
            return str(self.read_file_in_workdir(name))
        if self.shell_result is not None:
            # Endpoint without a shared filesystem: the last lines the endpoint sent back.
            return str(getattr(self.shell_result, which))
        if self.error is not None:
            raise ValueError(f"task {self.name} failed before its app ran, so it has no {which}: {self.error}")
        raise ValueError(
            f"{name} not found in {self.workdir} and task {self.name} has not returned yet "
            f"(state {self.state}); on an endpoint without a shared filesystem {which} arrives with the result"
        )

    def read_stdout(self) -> str:
        """Return the app's standard output.

        Returns
        -------
        str
            The whole file where driver and endpoint share a filesystem; otherwise the last
            ``snippet_lines`` lines returned with the result.
        """
        return self._read("stdout")

    def read_stderr(self) -> str:
        """Return the app's standard error (see :meth:`read_stdout`).

        Returns
        -------
        str
            The app's standard error.
        """
        return self._read("stderr")

    # --- kill -----------------------------------------------------------------------

    def kill(self, wait_time: int | None = 60) -> None:
        """Stop the task, or make sure it never runs.

        By the task's state:

        * queued here (still in an SDK ``Executor``'s send queue): its future is cancelled and it is
          taken out of that queue, so it never runs;
        * being sent (``gc_task_id`` may still be None) or sent, not seen running (``WAITING``): its
          future is cancelled (its result will be ignored);
          an app on a shared filesystem also gets its kill file, so it returns at once if it starts;
        * running: as below.

        Where the endpoint shares the task's working directory (the local endpoint, or a site
        endpoint without ``remote_workdir``), a kill file is written there: a running app's
        processes (launcher and ranks) are stopped within a second, and a task not yet started
        returns at once when it starts.  ``kill`` then waits (at most ``wait_time`` seconds plus a
        margin) for a running app to end.  Otherwise, and for Python functions (which are never
        interrupted), the task goes on on the endpoint and only this side marks it ``USER_KILLED``
        and ignores its result.

        Parameters
        ----------
        wait_time : int, optional
            Seconds to wait for a running app to end (None: do not wait).
        """
        if self.dry_run:
            return
        if self.future is None:
            self.state = "USER_KILLED"
            self.finished = True
            return
        self.poll()
        if self.finished:
            log.warning("Trying to kill task that is no longer running. Task %s: Status is %s", self.name, self.state)
            return
        log.info("Killing task %s", self.name)
        was_running = self.state == "RUNNING"
        if not was_running and self.endpoint_executor is not None:
            # Not seen running: cancel the future; a task the SDK has not sent yet never leaves this process.
            from bundle.endpoints.unsent import withdraw

            withdraw(self.endpoint_executor, self.future)
        if self.kind != "python" and self.shared_fs and self.workdir:
            try:
                with open(os.path.join(self.workdir, KILL_FILE.format(marker=self.marker)), "w") as fh:
                    fh.write(f"killed from pid {os.getpid()}\n")
            except OSError as err:
                log.warning("cannot write the kill file of task %s in %s: %s", self.name, self.workdir, err)
            else:
                if was_running and wait_time is not None:
                    concurrent.futures.wait([self.future], timeout=float(wait_time) + 5.0)
        self.state = "USER_KILLED"
        self.finished = True
        self.success = False
        self.calc_task_timing()


def _last_line(err: BaseException) -> str:
    """Return the last line of an error's text: for a remote traceback, the exception and its message."""
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__
