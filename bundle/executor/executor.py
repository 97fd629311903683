"""``GlobusComputeExecutor``: libEnsemble's executor interface, with the work running on a Globus Compute endpoint.

A sim written for :class:`~libensemble.executors.mpi_executor.MPIExecutor` runs
unchanged when the calling script builds this executor instead::

    exctr = GlobusComputeExecutor(endpoint="local", user_endpoint_config={"slots_per_node": 2})
    exctr.register_app(full_path="/path/to/forces.x", app_name="forces")
    ensemble = Ensemble(..., executor=exctr)

    # in the sim, as with MPIExecutor
    task = libE_info["executor"].submit(app_name="forces", app_args="1000 10 1000", num_procs=2)
    task.wait()

MPI apps go to the endpoint as :class:`~globus_compute_sdk.MPIFunction` work with a
``resource_specification`` of integer ``num_nodes``, ``ranks_per_node`` and
``num_ranks``; serial apps (``register_app(..., mpi=False)``) as
:class:`~globus_compute_sdk.ShellFunction` work; Python callables
(``register_app(..., pyobj=f)`` or ``submit(func=f, args=..., kwargs=...)``) as
ordinary Globus Compute tasks.  Endpoint clients and engines are created lazily in
the process that first submits, through :class:`~bundle.endpoints.session.GCSession`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shlex
import threading
import time
import typing as t
import uuid
import weakref

from libensemble.executors.executor import (
    NOT_STARTED_STATES,
    Application,
    Executor,
    ExecutorException,
)

from bundle.endpoints.health import DEFAULT_OFFLINE_TIMEOUT, check_offline_timeout, health_of
from bundle.endpoints.local import shared
from bundle.endpoints.session import LOCAL, GCSession, parse_endpoint
from bundle.errors import BundleError, ResourceSpecificationError, TaskSerializationError
from bundle.executor import gpus
from bundle.executor.failfast import systematic_failure
from bundle.executor.launch import allocation_hosts, launch_prefix, mpi_spec, template_option
from bundle.executor.placement import block_shape, check_fits
from bundle.executor.remote import portable
from bundle.executor.scripts import Script, script_of
from bundle.executor.task import GlobusComputeTask
from bundle.processes import interrupt
from bundle.processes.forksafe import KeyedLocks
from bundle.processes.thread_cwd import own_working_directory
from bundle.wire.limits import PAYLOAD_LIMIT, check_size, rough_size, submission_size
from bundle.wire.resource_spec import normalize_mpi_spec
from bundle.wire.shipping import ship_task_function

if t.TYPE_CHECKING:
    from bundle.endpoints.templates import EndpointTemplate

log = logging.getLogger(__name__)

_ENDPOINT_LOCKS = KeyedLocks(weak=True)
"""Per endpoint executor: held while a task's ``resource_specification`` is set on it and the task submitted,
and while the runners are registered with it.  One slow endpoint never stalls submissions to another."""

_RUNNER_IDS: weakref.WeakKeyDictionary[t.Any, dict[str, str]] = weakref.WeakKeyDictionary()
"""Per endpoint executor: the function ids of the registered runners (``run_app``, ``run_python``)."""

ONE_RANK = {"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}


def _unserializable(
    app: Application, args: tuple[t.Any, ...], kwargs: dict[str, t.Any], err: Exception
) -> TaskSerializationError:
    """Name the function or argument of a Python task that the endpoint's serializer cannot send."""
    from globus_compute_sdk.serialize import ComputeSerializer

    serializer = ComputeSerializer()
    items: list[tuple[str, t.Any]] = [("the function", app.pyobj)]
    items += [(f"args[{i}]", a) for i, a in enumerate(args)] + [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    what, detail = "the task", f"{type(err).__name__}: {err}"
    for name, value in items:
        try:
            serializer.serialize(value)
        except Exception as item_err:
            cause = item_err.__cause__ or item_err.__context__
            what = name
            detail = f"{type(item_err).__name__}: {item_err}" + (
                f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            )
            break
    return TaskSerializationError(
        f"cannot send {what} of Python app {app.name!r} to the endpoint: {detail}. Pass values the endpoint's "
        "serializer can pickle (plain data, numpy arrays, module-level functions), not open files, locks, "
        "connections or objects that refuse pickling.",
        what=what,
    )


class GlobusComputeExecutor(Executor):  # type: ignore[misc]  # libensemble is untyped
    """Submit MPI, shell and Python work from libEnsemble sims to a Globus Compute endpoint.

    Parameters
    ----------
    endpoint : str or uuid.UUID
        ``"local"`` (the bundled local endpoint, the real engine in this process, the default),
        ``"local:<template>"`` or a Globus Compute endpoint UUID.
    template : str, optional
        Bundled template: the one a local endpoint renders (default ``local``), or the one a cloud
        endpoint was configured from (then used only to check ``user_endpoint_config``, the node limit
        and the launcher before anything is submitted).
    user_endpoint_config : dict, optional
        Template options, checked against the template's schema now.
    resource_specification : dict, optional
        Default MPI resources of a task that names none (default: one rank on one node).  It may
        also hold ``num_gpus``: the GPUs of a task that asks for none (see ``submit``).
    remote_workdir : str, optional
        Run tasks under this directory on the endpoint (mirroring each sim's directory below the
        ensemble's) instead of in the submitting sim's working directory.  Use it when the endpoint
        does not share the driver's filesystem.
    snippet_lines : int
        Lines of stdout / stderr returned with each app's result (read when the files are not visible).
    local_options : dict, optional
        Options of a local endpoint: ``run_dir`` and ``start_timeout`` (the same name in
        :class:`~bundle.gconly.GCOnlySpecs` and :meth:`~bundle.endpoints.session.GCSession.get_executor`).
    pending_timeout : float, optional
        Seconds a task may wait for the endpoint to start it; after that the task is ``FAILED`` with a
        :class:`~bundle.errors.TaskPendingTimeoutError` (its future is cancelled), so a sim waiting on an
        offline or unreachable endpoint returns instead of hanging.  A task counts as started when its
        app is seen running (its stdout file appears; shared filesystems only); for Python functions,
        and apps on an endpoint without a shared filesystem, the bound applies to the result.  Leave it
        unset (no bound, as the Globus Compute SDK) when an endpoint's batch job may queue for long.
    offline_timeout : float, optional
        For an endpoint UUID: seconds the endpoint may be reported ``offline`` by the Globus Compute service,
        after it was seen online, before the tasks waiting on it fail with
        :class:`~bundle.errors.EndpointOfflineError` (and the next ``submit`` raises it).  A stopped endpoint
        never answers the tasks it held.  Default 120; None waits for it however long.
    endpoint_id : str or uuid.UUID, optional
        Another name for ``endpoint`` (the SDK's and libEnsemble's).
    sdk_options : dict, optional
        For an endpoint UUID: keyword options of ``globus_compute_sdk.Executor`` (``amqp_port``,
        ``client``, ``batch_size``, ...), checked against the installed SDK (see :mod:`bundle.endpoints.sdk_options`).

    Examples
    --------
    >>> exctr = GlobusComputeExecutor(endpoint="local")
    >>> exctr.register_app("/usr/bin/hostname", app_name="hostname", mpi=False)
    >>> exctr.submit(app_name="hostname", dry_run=True).runline
    '/usr/bin/hostname'
    """

    fail_fast: int = 5
    """When the first this-many Python tasks to end all failed with the same error, the next Python
    ``submit`` raises :class:`~bundle.executor.failfast.SystematicTaskError` quoting it; 0 never does."""

    def __init__(
        self,
        endpoint: str | uuid.UUID | None = None,
        template: str | None = None,
        user_endpoint_config: dict[str, t.Any] | None = None,
        resource_specification: dict[str, t.Any] | None = None,
        *,
        endpoint_id: str | uuid.UUID | None = None,
        remote_workdir: str | None = None,
        snippet_lines: int = 1000,
        local_options: dict[str, t.Any] | None = None,
        pending_timeout: float | None = None,
        sdk_options: dict[str, t.Any] | None = None,
        offline_timeout: float | None = DEFAULT_OFFLINE_TIMEOUT,
    ) -> None:
        self._tls = threading.local()
        Executor.__init__(self)
        if endpoint is not None and endpoint_id is not None and str(endpoint) != str(endpoint_id):
            raise ValueError(f"endpoint={endpoint!r} and endpoint_id={endpoint_id!r} disagree; give one of them")
        chosen = endpoint if endpoint is not None else endpoint_id
        self.endpoint, self.template_name = parse_endpoint(LOCAL if chosen is None else chosen, template)
        from bundle.endpoints.sdk_options import check_sdk_options

        self.sdk_options = check_sdk_options(sdk_options, local=self.endpoint == LOCAL)
        self.user_endpoint_config = dict(user_endpoint_config or {})
        if self.template_name is not None:
            from bundle.endpoints.templates import get_template

            get_template(self.template_name).validate(self.user_endpoint_config)
        default_spec = dict(resource_specification or {})
        self.default_num_gpus: int | None = default_spec.pop("num_gpus", None)
        self.resource_specification = normalize_mpi_spec(default_spec)
        self.remote_workdir = remote_workdir
        self.snippet_lines = int(snippet_lines)
        self.local_options = dict(local_options or {})
        if self.local_options and not self.is_local:
            raise ValueError(f"local_options {sorted(self.local_options)} apply to local endpoints only")
        if pending_timeout is not None and (isinstance(pending_timeout, bool) or not pending_timeout > 0):
            raise ValueError(f"pending_timeout must be a positive number of seconds, got {pending_timeout!r}")
        self.pending_timeout = None if pending_timeout is None else float(pending_timeout)
        self.offline_timeout = check_offline_timeout(offline_timeout, "offline_timeout")
        self._app_kinds: dict[str, str] = {}
        interrupt.install()  # Ctrl-C stops the tasks and the endpoint, then libEnsemble saves its history

    # --- per-thread worker identity (libEnsemble's threads comms share one executor) ------

    @property
    def comm(self) -> t.Any:
        """The worker's comm (per thread, so workers on ``threads`` comms each keep their own)."""
        return getattr(self._tls, "comm", None)

    @comm.setter
    def comm(self, value: t.Any) -> None:
        self._tls.comm = value

    @property
    def workerID(self) -> int | None:
        """The libEnsemble worker this thread serves."""
        return getattr(self._tls, "workerID", None)

    @workerID.setter
    def workerID(self, value: int | None) -> None:
        self._tls.workerID = value

    @property
    def manager_signal(self) -> t.Any:
        """The last manager signal seen by this thread's worker."""
        return getattr(self._tls, "manager_signal", None)

    @manager_signal.setter
    def manager_signal(self, value: t.Any) -> None:
        self._tls.manager_signal = value

    def set_worker_info(self, comm: t.Any = None, workerid: int | None = None) -> None:
        """Record the calling worker's comm and id, as libEnsemble's workers call it when they start.

        A worker that is a thread (``threads`` comms) also gets a working directory of its own, so
        that its sim directory, and the tasks its sims submit from there, are its own and not
        another worker's (see :mod:`bundle.processes.thread_cwd`).

        Parameters
        ----------
        comm : Comm, optional
            The worker's comm with the manager.
        workerid : int, optional
            The worker's id.
        """
        self.workerID = workerid
        self.comm = comm
        if threading.current_thread() is not threading.main_thread():
            own_working_directory()

    def __getstate__(self) -> dict[str, t.Any]:
        state = self.__dict__.copy()
        state.pop("_tls", None)
        state.pop("_gce", None)
        return state

    def __setstate__(self, state: dict[str, t.Any]) -> None:
        self.__dict__.update(state)
        self._tls = threading.local()

    # --- endpoint -------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """True for the bundled local endpoint (same host and filesystem as the driver)."""
        return self.endpoint == LOCAL

    @functools.cached_property
    def template(self) -> EndpointTemplate | None:
        """The bundled template, when known."""
        if self.template_name is None:
            return None
        from bundle.endpoints.templates import get_template

        return get_template(self.template_name)

    @property
    def is_mpi_engine(self) -> bool:
        """Whether the endpoint runs a ``GlobusMPIEngine``.

        Read from the template's ``engine_type``; assumed when the template is unknown (a cloud
        endpoint given without ``template=``), since executor mode is for MPI apps.  Name the
        template of a ``GlobusComputeEngine`` endpoint so serial and Python tasks go without a
        ``resource_specification``.
        """
        engine = template_option(self.template, self.user_endpoint_config, "engine_type")
        return engine is None or engine == "GlobusMPIEngine"

    @property
    def shared_fs(self) -> bool:
        """Whether tasks run where this process can see their working directory (no ``remote_workdir``)."""
        return self.remote_workdir is None

    @property
    def mpi_launcher(self) -> str:
        """The launcher the endpoint's engine prefixes MPI apps with."""
        return str(template_option(self.template, self.user_endpoint_config, "mpi_launcher") or "mpiexec")

    @functools.cached_property
    def gpu_layout(self) -> gpus.GpuLayout | None:
        """The GPUs of one node of the endpoint, as its template declares them (None: no GPUs declared)."""
        return gpus.layout_of(self.template, self.user_endpoint_config, self.mpi_launcher)

    def serial_setup(self) -> None:
        """Share the local endpoint with the worker processes libEnsemble is about to start.

        libEnsemble calls this in the manager process before it forks the workers of ``local`` comms.
        For the local endpoint, the workers then submit to one engine in this process (see
        :mod:`bundle.endpoints.local.shared`), as they would to one endpoint at a site; the engine
        starts at the first task.  Worker threads (``threads`` comms) use this process's endpoint
        directly.
        """
        super().serial_setup()
        if not (self.is_local and shared.available()):
            return
        key = self.__dict__.get("_share")
        if key is None or not shared.is_open(key):
            self.__dict__["_share"] = shared.open_share(self._own_endpoint)

    def gc_executor(self) -> t.Any:
        """Return this process's endpoint executor (created on first use, then kept per process).

        In a worker process started after :meth:`serial_setup`, the client of the manager's local
        endpoint.

        Returns
        -------
        LocalEndpoint, EndpointClient or globus_compute_sdk.Executor
        """
        key = self.__dict__.get("_share")
        if key is not None and key.owner != os.getpid():
            return shared.client(key)
        return self._own_endpoint()

    def _own_endpoint(self) -> t.Any:
        """Return this process's own endpoint executor, from the session cache."""
        cached = self.__dict__.get("_gce")
        if cached is not None and cached[0] == os.getpid() and GCSession.holds(cached[1]):
            return cached[1]
        gce = GCSession.get_executor(
            self.endpoint,
            self.user_endpoint_config,
            template=self.template_name,
            sdk_options=self.__dict__.get("sdk_options") or None,
            local_options=self.local_options,
        )
        self.__dict__["_gce"] = (os.getpid(), gce)
        return gce

    @staticmethod
    def _runner_id(gce: t.Any, which: str) -> str:
        """Register ``run_app`` or ``run_python`` with this endpoint executor once; return its function id."""
        with _ENDPOINT_LOCKS.of(gce):
            ids = _RUNNER_IDS.setdefault(gce, {})
            if which not in ids:
                ids[which] = gce.register_function(portable(which))
            return ids[which]

    # --- apps -----------------------------------------------------------------------

    def register_app(
        self,
        full_path: str,
        app_name: str | None = None,
        calc_type: str | None = None,
        desc: str | None = None,
        precedent: str = "",
        pyobj: t.Callable[..., t.Any] | None = None,
        mpi: bool = True,
    ) -> None:
        """Register an app, as ``MPIExecutor.register_app`` does.

        Parameters
        ----------
        full_path : str
            Path of the executable on the endpoint's filesystem (for a Python app, a label).
        app_name : str, optional
            Name used in ``submit(app_name=...)`` (default: the file name).
        calc_type : str, optional
            ``"sim"`` or ``"gen"``: the default app for that calc type.
        desc : str, optional
            Description.
        precedent : str, optional
            Command put before ``full_path`` (``%LIBENSEMBLE_SIM_DIR%`` is replaced).  A ``.py`` app gets
            this Python on the local endpoint and ``python3`` (the endpoint's) elsewhere.
        pyobj : callable, optional
            Register a Python function: ``submit(app_name=..., args=..., kwargs=...)`` runs it.
        mpi : bool
            Launch the app with the endpoint's MPI launcher (an ``MPIFunction``, the default) or run it
            as a serial command (a ``ShellFunction``, no launcher prefix).
        """
        if not app_name:
            app_name = os.path.split(full_path)[1]
        if pyobj is not None and not callable(pyobj):
            raise ExecutorException(f"pyobj for app {app_name!r} must be callable, got {type(pyobj).__name__}")
        if full_path.endswith(".py") and not precedent and not self.is_local:
            precedent = "python3"  # not this driver's interpreter path, which need not exist on the endpoint
        self.apps[app_name] = Application(full_path, app_name, calc_type, desc, pyobj, precedent)
        self._app_kinds[app_name] = "python" if pyobj is not None else ("mpi" if mpi else "shell")
        if calc_type is not None:
            if calc_type not in self.default_apps:
                raise ExecutorException(f"Unrecognized calculation type {calc_type!r}: use 'sim' or 'gen'")
            self.default_apps[calc_type] = self.apps[app_name]

    def _kind(self, app: Application) -> str:
        return self._app_kinds.get(app.name, "python" if app.pyobj is not None else "mpi")

    # --- submit ---------------------------------------------------------------------

    def submit(
        self,
        calc_type: str | None = None,
        app_name: str | None = None,
        num_procs: int | None = None,
        num_nodes: int | None = None,
        procs_per_node: int | None = None,
        num_gpus: int | None = None,
        machinefile: str | None = None,
        app_args: str | None = None,
        stdout: str | None = None,
        stderr: str | None = None,
        stage_inout: str | None = None,
        hyperthreads: bool | None = False,
        dry_run: bool | None = False,
        wait_on_start: bool | int | None = False,
        extra_args: str | None = None,
        auto_assign_gpus: bool | None = False,
        match_procs_to_gpus: bool | None = False,
        env_script: str | None = None,
        mpi_runner_type: str | dict[str, t.Any] | None = None,
        *,
        func: t.Callable[..., t.Any] | None = None,
        args: t.Sequence[t.Any] = (),
        kwargs: dict[str, t.Any] | None = None,
        walltime: float | None = None,
        workdir: str | None = None,
    ) -> GlobusComputeTask:
        """Create a task and submit it to the endpoint, with ``MPIExecutor.submit``'s meaning.

        Parameters
        ----------
        calc_type, app_name : str, optional
            Which registered app (``app_name`` recommended).  Not needed with ``func``.
        num_procs, num_nodes, procs_per_node : int, optional
            MPI ranks, nodes and ranks per node; any consistent subset (also read from ``extra_args``).
            Without them the executor's default ``resource_specification`` applies.
        app_args : str, optional
            The app's command-line arguments.  For a Python function (``func`` or a ``pyobj`` app)
            given no ``args``, the string is passed as its one argument, ``func(app_args)``.
        stdout, stderr : str, optional
            Output file names in the task's working directory.
        dry_run : bool
            Compose the launch line (``task.runline``) without running anything.
        wait_on_start : bool or int
            Block until the task is seen running (at most that many seconds when an int).
        extra_args : str, optional
            Launcher arguments (resource words in them count; the rest become ``launcher_options``).
        func : callable, optional
            Run this Python function instead of an app.
        args, kwargs : optional
            Arguments of ``func`` or of a Python app.
        walltime : float, optional
            Seconds after which an app is stopped; its ``errcode`` is then 124.
        workdir : str, optional
            Working directory of this task on the endpoint (default: the sim's, or under ``remote_workdir``).
        num_gpus : int, optional
            GPUs for the whole task (spread evenly over its nodes; each rank sees only its own share).
            Needs a template that declares ``gpus_per_node``; the default comes from the executor's
            ``resource_specification``.
        auto_assign_gpus : bool
            Give the task its share of each node's GPUs (``gpus_per_node // slots_per_node``).
        match_procs_to_gpus : bool
            One rank per GPU: the rank count is set from the GPUs.
        machinefile, stage_inout, hyperthreads, env_script, mpi_runner_type
            Accepted for ``MPIExecutor`` compatibility; those that cannot apply to an endpoint are refused
            with an error saying what to use instead.

        Returns
        -------
        GlobusComputeTask
            The submitted task.

        Raises
        ------
        ExecutorException
            Unknown app, or an option that cannot apply to an endpoint.
        ResourceSpecificationError
            Resource words that disagree, do not divide evenly or ask for more nodes than the endpoint has.
        """
        self._refuse_unsupported(machinefile, env_script, mpi_runner_type)
        if stage_inout is not None:
            log.warning("stage_inout option ignored in this executor - runs in-place")
        if hyperthreads:
            log.warning("hyperthreads ignored: the endpoint's launcher_options or worker_init place ranks")
        if walltime is not None and (isinstance(walltime, bool) or walltime <= 0):
            raise ExecutorException(f"walltime must be a positive number of seconds, got {walltime!r}")

        app, kind = self._app_of(calc_type, app_name, func)
        script = script_of(func)
        if script is not None:
            kind = "mpi" if script.mpi else "shell"
            self._refuse_script_words(app_args, args, kwargs, num_gpus, auto_assign_gpus, match_procs_to_gpus)
            walltime = script.walltime if walltime is None else walltime
            stdout, stderr = stdout or script.stdout, stderr or script.stderr
        elif num_gpus is None and not auto_assign_gpus:
            num_gpus = self.default_num_gpus
        gpus.check_task_kind(kind, num_gpus, auto_assign_gpus)
        if kind == "python" and app_args is not None:
            # libEnsemble's Globus Compute design writes submit(func=f, app_args="..."): the string is f's argument.
            if args:
                raise ExecutorException(
                    "give a Python function's arguments either as args=(...) or as app_args='...' (its one "
                    "string argument), not both"
                )
            args = (app_args,)
        task = self._new_task(app, kind, app_args, workdir, stdout, stderr, dry_run)
        task.resource_specification = self._task_spec(kind, num_procs, num_nodes, procs_per_node, extra_args)
        gpu_plan, task.resource_specification = self._gpu_plan(
            kind, task.resource_specification, num_gpus, auto_assign_gpus, match_procs_to_gpus, num_procs
        )
        if script is not None:
            cmd = self._script_command(task, script)
        else:
            cmd = "" if kind == "python" else self._command(task, app, kind, app_args, dry_run, gpu_plan)
        if dry_run:
            log.info("Test (No submit) Runline: %s", task.runline)
            task._set_complete()
            self.list_of_tasks.append(task)
            return task
        if kind == "python":
            stop = systematic_failure(self.list_of_tasks, self.fail_fast)
            if stop is not None:
                raise stop
        if task.shared_fs and kind != "python":
            self._remove_stale_output(task)
        if not self._hand_off(task, app, kind, cmd, args, kwargs, walltime, gpu_plan):
            return task
        if wait_on_start:
            self._wait_started(task, None if wait_on_start is True else float(wait_on_start))
        return task

    def _app_of(
        self, calc_type: str | None, app_name: str | None, func: t.Callable[..., t.Any] | None
    ) -> tuple[Application, str]:
        """Return the app to run and its kind (``python``, ``mpi`` or ``serial``), as ``MPIExecutor`` finds it."""
        if func is not None:
            if not callable(func):
                raise ExecutorException(f"func must be callable, got {type(func).__name__}")
            name = getattr(func, "__name__", "func")
            return Application(name, name, None, None, func), "python"
        if app_name is not None:
            app = self.get_app(app_name)
        elif calc_type is not None:
            app = self.default_app(calc_type)
        else:
            raise ExecutorException("Either app_name, calc_type or func must be set")
        return app, self._kind(app)

    def _new_task(
        self,
        app: Application,
        kind: str,
        app_args: str | None,
        workdir: str | None,
        stdout: str | None,
        stderr: str | None,
        dry_run: bool | None,
    ) -> GlobusComputeTask:
        """Create the task object (not yet submitted)."""
        task = GlobusComputeTask(
            app,
            app_args,
            self._task_workdir(workdir),
            stdout,
            stderr,
            self.workerID,
            bool(dry_run),
            kind=kind,
            local=self.is_local,
            shared_fs=self.shared_fs,
        )
        task.pending_timeout = self.pending_timeout
        task.offline_timeout = self.__dict__.get("offline_timeout", DEFAULT_OFFLINE_TIMEOUT)
        task.endpoint_label = str(self.endpoint)
        return task

    def _command(
        self,
        task: GlobusComputeTask,
        app: Application,
        kind: str,
        app_args: str | None,
        dry_run: bool | None,
        gpu_plan: gpus.GpuPlan | None,
    ) -> str:
        """Return an app task's command for the runner, and set ``task.runline``."""
        # As MPIExecutor does: the app command and app_args split on whitespace; each word is quoted
        # for the shell that ShellFunction / MPIFunction run the command line in.
        tokens = app.app_cmd.split() + (app_args.split() if app_args else [])
        tokens = self._set_sim_dir_env(task, tokens)
        shown = " ".join(tokens)
        if gpu_plan is not None and kind == "mpi" and gpu_plan.layout.bind == "wrapper":
            bind = gpus.wrapper_tokens(gpu_plan)
            tokens = bind + tokens
            shown = f"{shlex.join(bind)} {shown}"
        cmd = " ".join(shlex.quote(tok) for tok in tokens).replace("{", "{{").replace("}", "}}")
        task.app_line = shown
        task.runline = self._runline(kind, shown, task.resource_specification)
        if not dry_run and self.is_local:
            self._check_app_exists(app)
        return cmd

    def _script_command(self, task: GlobusComputeTask, script: Script) -> str:
        """Return a script task's command for the runner (sent as written), and set ``task.runline``."""
        # As for apps: %LIBENSEMBLE_SIM_DIR% is replaced and LIBENSEMBLE_SIM_DIR set for the script.
        script = dataclasses.replace(script, text=self._set_sim_dir_env(task, [script.text])[0])
        task.script, task.app_line = script, script.text
        prefix = self._launch_prefix(task.resource_specification) if script.mpi else None
        task.runline = script.text if prefix is None else script.with_prefix(prefix)
        return script.wire_text

    @staticmethod
    def _refuse_script_words(
        app_args: str | None,
        args: t.Sequence[t.Any],
        kwargs: dict[str, t.Any] | None,
        num_gpus: int | None,
        auto_assign_gpus: bool | None,
        match_procs_to_gpus: bool | None,
    ) -> None:
        """Refuse arguments a script task cannot take: it runs as written."""
        if app_args is not None or args or kwargs:
            raise ExecutorException(
                "a ShellFunction / MPIFunction script runs as written: put its arguments in the script "
                "(app_args, args and kwargs apply to registered apps and Python functions)"
            )
        if num_gpus or auto_assign_gpus or match_procs_to_gpus:
            raise ExecutorException(
                "GPUs apply to registered apps: register the app (register_app) and submit it with num_gpus, or "
                "select devices in the script itself"
            )

    def _hand_off(
        self,
        task: GlobusComputeTask,
        app: Application,
        kind: str,
        cmd: str,
        args: t.Sequence[t.Any],
        kwargs: dict[str, t.Any] | None,
        walltime: float | None,
        gpu_plan: gpus.GpuPlan | None,
    ) -> bool:
        """Hand the task to its runner on the endpoint; False when it failed to start (recorded on the task).

        A Python task's function and arguments are shipped and serialized here, before anything is
        sent: what cannot travel raises :class:`~bundle.errors.TaskSerializationError` in ``submit``.
        """
        try:
            gce = self.gc_executor()
            self._check_endpoint(gce)
        except (ExecutorException, BundleError, TypeError):
            raise  # the caller's mistakes: not a task that failed to start
        except Exception as err:  # the endpoint cannot be reached: as MPIExecutor, a task that failed to start
            return self._failed_to_start(task, err)
        if kind == "python":
            which = "run_python"
            run_args = self._python_call(gce, app, tuple(args), dict(kwargs or {}), task.workdir)
        else:
            which = "run_app"
            run_args = (
                cmd,
                kind == "mpi",
                task.workdir,
                task.stdout,
                task.stderr,
                walltime,
                task.marker,
                self.snippet_lines,
                dict(task.env),
            )
            gpu_args = self._gpu_runner_args(kind, gpu_plan)
            if task.script is not None:  # run as written, as a ShellFunction (the script places the launch)
                run_args += (gpu_args, True)
            elif gpu_args is not None:  # only GPU tasks carry the claim function
                run_args += (gpu_args,)
        try:
            future = self._submit(gce, task.resource_specification, self._runner_id(gce, which), run_args)
        except (ExecutorException, BundleError, TypeError):
            raise  # the caller's mistakes: not a task that failed to start
        except Exception as err:  # the endpoint is gone or refused the task: a task that failed to start
            from globus_compute_sdk.errors import SerializationError

            if kind == "python" and isinstance(err, SerializationError):
                # A programming error, not a failure of the endpoint: say which value and what to change.
                raise _unserializable(app, tuple(args), dict(kwargs or {}), err) from err
            return self._failed_to_start(task, err)
        task._submitted(future, gce)
        log.info("Launching task %s: %s", task.name, task.runline or app.name)
        self.list_of_tasks.append(task)
        return True

    def _check_endpoint(self, gce: t.Any) -> None:
        """Raise what the bundle learnt of a cloud endpoint that cannot run this task (gone, or refusing its config).

        Raises
        ------
        bundle.errors.EndpointOfflineError, bundle.errors.UserEndpointStartError
            Instead of sending a task that would wait forever.
        """
        health = health_of(gce)
        if health is not None:
            failure = health.check(self.__dict__.get("offline_timeout", DEFAULT_OFFLINE_TIMEOUT))
            if failure is not None:
                raise failure

    def _failed_to_start(self, task: GlobusComputeTask, err: Exception) -> bool:
        """Record ``task`` as ``FAILED_TO_START`` with ``err`` (the endpoint could not take it); return False."""
        log.warning("Task %s failed to start: %s", task.name, err)
        task.error = err
        task.state = "FAILED_TO_START"
        task.finished = True
        self.list_of_tasks.append(task)
        return False

    def _python_call(
        self, gce: t.Any, app: Application, args: tuple[t.Any, ...], kwargs: dict[str, t.Any], workdir: str | None
    ) -> tuple[t.Any, ...]:
        """Return ``run_python``'s arguments for a Python task, fixed now: what is sent is what they are at submit.

        The function and its arguments are shipped (functions of the calling script with the globals
        they read) and checked; then serialized with the endpoint executor's serializer.  The local
        endpoint serializes inside its ``submit``; the SDK's ``Executor`` would serialize later, in its
        submission thread, so for it the arguments travel as a copy made here (serialized and read
        back), and later changes to them or to the globals in the calling script do not reach the task.

        Raises
        ------
        TaskSerializationError
            What cannot be shipped or serialized, named; nothing is submitted.
        """
        from globus_compute_sdk.serialize import ComputeSerializer

        ser = getattr(gce, "serializer", None)
        serializer = ser if isinstance(ser, ComputeSerializer) else ComputeSerializer()
        strategy = type(serializer.code_serializer).__name__
        fn, args, kwargs = ship_task_function(
            t.cast(t.Callable[..., t.Any], app.pyobj), app.name, strategy, args, kwargs
        )
        run_args = (fn, args, kwargs, workdir)
        if self.is_local:
            if rough_size(run_args[1:3]) > PAYLOAD_LIMIT // 4:  # measured only where large data may be
                self._check_python_size(app, submission_size(serializer, run_args))
            return run_args
        try:
            data = serializer.serialize(run_args)
            copy = t.cast(tuple[t.Any, ...], serializer.deserialize(data))
        except Exception as err:
            raise _unserializable(app, args, kwargs, err) from err
        self._check_python_size(app, len(serializer.pack_buffers([data, serializer.serialize({})])))
        return copy

    @staticmethod
    def _check_python_size(app: Application, size: int) -> None:
        """Refuse a Python task whose payload (``size`` bytes, as the SDK packs it) is over Globus Compute's limit."""
        check_size(
            size,
            f"the arguments of Python task {app.name!r}",
            "pass large data through files the endpoint can read (give the function a path), or split the work "
            "over several tasks.",
        )

    @staticmethod
    def _remove_stale_output(task: GlobusComputeTask) -> None:
        """Remove earlier output files of the same names, as MPIExecutor truncates them at launch."""
        assert task.workdir is not None
        for name in (task.stdout, task.stderr):
            try:
                os.remove(os.path.join(task.workdir, name))
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("cannot remove the old %s of task %s: %s", name, task.name, err)

    @staticmethod
    def _refuse_unsupported(machinefile: str | None, env_script: str | None, mpi_runner_type: t.Any) -> None:
        if machinefile:
            raise ExecutorException(
                "machinefile cannot apply to an endpoint: the engine chooses the nodes; ask for num_nodes instead"
            )
        if env_script:
            raise ExecutorException(
                "env_script cannot apply to an endpoint task: put environment set-up in the template's worker_init"
            )
        if mpi_runner_type:
            raise ExecutorException(
                "mpi_runner_type cannot be chosen per task: the endpoint's mpi_launcher template option sets it"
            )

    def _task_workdir(self, workdir: str | None) -> str:
        if workdir:
            return workdir
        here = os.getcwd()
        if self.remote_workdir is None:
            return here
        rel = os.path.relpath(here, self.base_dir)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            rel = os.path.basename(here)  # a sim directory outside the driver's: keep it under remote_workdir
        return os.path.normpath(os.path.join(self.remote_workdir, "" if rel == "." else rel))

    def _task_spec(
        self,
        kind: str,
        num_procs: int | None,
        num_nodes: int | None,
        procs_per_node: int | None,
        extra_args: str | None,
    ) -> dict[str, t.Any] | None:
        """Return the normalized ``resource_specification`` of one task (None for a non-MPI engine)."""
        if kind != "mpi":
            if any(v is not None for v in (num_procs, num_nodes, procs_per_node)):
                raise ResourceSpecificationError(
                    f"num_procs / num_nodes / procs_per_node apply to MPI apps only (this is a {kind} task)"
                )
            # A GlobusMPIEngine needs a full spec for every task (an empty one hangs Parsl's MPI mode).
            return dict(ONE_RANK) if self.is_mpi_engine else None
        if self.is_mpi_engine is False:
            raise ResourceSpecificationError(
                f"template {self.template_name!r} with engine_type GlobusComputeEngine cannot launch MPI apps; "
                "use engine_type 'GlobusMPIEngine' or register the app with mpi=False"
            )
        spec = mpi_spec(
            num_procs,
            num_nodes,
            procs_per_node,
            extra_args,
            default=self.resource_specification,
            mpi_launcher=self.mpi_launcher,
        )
        check_fits(block_shape(self.template, self.user_endpoint_config), spec["num_nodes"], self.template_name)
        return spec

    def _gpu_plan(
        self,
        kind: str,
        spec: dict[str, t.Any] | None,
        num_gpus: int | None,
        auto_assign_gpus: bool | None,
        match_procs_to_gpus: bool | None,
        num_procs: int | None,
    ) -> tuple[gpus.GpuPlan | None, dict[str, t.Any] | None]:
        """Check the task's GPU request on the submitting side; return the plan and the (MPI) spec to send."""
        if not (num_gpus or auto_assign_gpus or match_procs_to_gpus):
            return None, spec
        if kind != "mpi" and match_procs_to_gpus:
            raise ResourceSpecificationError("match_procs_to_gpus applies to MPI apps only (this is a shell app)")
        given = dict(spec) if spec is not None else dict(ONE_RANK)
        plan, out = gpus.plan(
            self.gpu_layout,
            self.template_name,
            num_gpus,
            auto_assign_gpus,
            match_procs_to_gpus,
            given,
            num_procs is not None,
        )
        if kind != "mpi":
            if plan is not None and plan.per_node != plan.num_gpus:
                raise ResourceSpecificationError("a shell app runs on one node: ask for at most gpus_per_node GPUs")
            return plan, spec
        return plan, out

    def _gpu_runner_args(self, kind: str, plan: gpus.GpuPlan | None) -> dict[str, t.Any] | None:
        """Return the runner's GPU argument: devices are claimed on the endpoint unless ``srun`` binds them.

        The claim waits for free devices at most ``pending_timeout`` (else :data:`gpus.CLAIM_TIMEOUT`).
        """
        if plan is None or (kind == "mpi" and plan.layout.bind == "launcher"):
            return None
        return plan.runner_args(self.pending_timeout)

    def _runline(self, kind: str, cmd: str, spec: dict[str, t.Any] | None) -> str:
        prefix = self._launch_prefix(spec) if kind == "mpi" else None
        return cmd if prefix is None else f"{prefix} {cmd}"

    def _launch_prefix(self, spec: dict[str, t.Any] | None) -> str | None:
        """Return the launcher line an MPI task with ``spec`` is started with (None without a spec)."""
        if spec is None:
            return None
        # Hosts are known here only for the local template (this host, or the allocation the driver runs in).
        hosts = (allocation_hosts() or ["localhost"]) if self.is_local and self.template_name == "local" else None
        return launch_prefix(self.mpi_launcher, spec, hosts)

    @staticmethod
    def _submit(gce: t.Any, spec: dict[str, t.Any] | None, function_id: str, args: tuple[t.Any, ...]) -> t.Any:
        """Submit with ``spec`` as the task's resource specification on a possibly shared endpoint executor."""
        with _ENDPOINT_LOCKS.of(gce):
            previous = gce.resource_specification
            gce.resource_specification = spec
            try:
                return gce.submit_to_registered_function(function_id, args=args, kwargs={})
            finally:
                gce.resource_specification = previous

    def _wait_started(self, task: GlobusComputeTask, limit: float | None) -> None:
        """Block until ``task`` is running or done (at most ``limit`` seconds)."""
        end = None if limit is None else time.monotonic() + limit
        while task.state in NOT_STARTED_STATES and not task.finished:
            if end is not None and time.monotonic() >= end:
                break
            time.sleep(0.01)
            task.poll()

    # --- libEnsemble executor interface --------------------------------------------

    def kill(self, task: GlobusComputeTask) -> None:
        """Kill or cancel ``task`` (see :meth:`GlobusComputeTask.kill`).

        Parameters
        ----------
        task : GlobusComputeTask
            A task from this executor.
        """
        if not isinstance(task, GlobusComputeTask):
            raise ExecutorException(f"Invalid task has been provided: {task!r}")
        task.kill(self.wait_time)
