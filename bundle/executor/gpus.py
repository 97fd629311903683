"""GPUs for executor-mode tasks: the template's GPU layout, ``num_gpus`` requests, and per-rank binding.

``GlobusComputeExecutor.submit(num_gpus=..., auto_assign_gpus=..., match_procs_to_gpus=...)``
has ``MPIExecutor``'s meaning.  Parsl's ``resource_specification`` has no GPU key, so
the GPUs of a task travel beside it:

* :func:`layout_of` reads the template's GPU layout (``gpus_per_node``, ``gpu_ids``,
  ``gpu_env``, ``gpu_bind``) from the ``user_endpoint_config`` and the template's defaults.
* :func:`plan` checks a request against that layout on the submitting side (impossible
  requests fail there, with what to change) and returns a :class:`GpuPlan`.
* With ``launcher`` binding (``srun``) the plan adds ``--gpus-per-node`` and ``--gpus-per-task``
  to the task's ``launcher_options``: Slurm picks free devices for each job step and binds each
  rank (concurrent steps need ``SLURM_EXACT``, which the ``slurm`` template sets with
  ``slots_per_node`` > 1).
* With ``wrapper`` binding (``mpiexec``, as on Polaris and Aurora) the endpoint-side runner
  claims free devices of the task's node(s) with lock files (:func:`claim_devices`, held for
  the task's duration, so a running task's devices are never given to another) and every
  rank starts through a small shell wrapper (:func:`wrapper_tokens`) that exports the
  vendor's visible-devices variable from the rank's local rank.
"""

from __future__ import annotations

import numbers
import typing as t
from dataclasses import dataclass

from libensemble.executors.executor import ExecutorException

from bundle.errors import ResourceSpecificationError

VISIBLE_DEVICES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
"""Visible-devices variables by vendor: NVIDIA (CUDA), AMD (ROCm runtime, HIP), Intel (Level Zero)."""

LOCK_DIR_ENV = "LIBE_GC_GPU_LOCK_DIR"
"""Endpoint-side variable naming the node-local folder of device lock files (default: ``/tmp/libe-gc-gpus-<uid>``).

The folder is the user's own, mode 0700 (see :func:`claim_devices`)."""

CLAIM_TIMEOUT = 3600.0
"""Seconds a task waits on the endpoint for free devices when the executor has no ``pending_timeout``.

With ``pending_timeout`` set, the claim waits at most that long (the submitting side gives the
task up then anyway).  A claim that runs out fails the task with a ``TimeoutError`` naming the node."""

LOCAL_RANK_VARS = (
    "PMI_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "PALS_LOCAL_RANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
)
"""Where launchers put a rank's index on its node: PALS/Cray PMI, MPICH Hydra, PALS, Open MPI, srun.

Hydra started through ``srun`` also sets ``SLURM_LOCALID`` (of its proxy), so the MPI
launchers' own variables are read first."""

WRAPPER_NAME = "libe-gc-gpu-bind"
"""``$0`` of the per-rank wrapper, so it is recognizable in ``ps`` and in ``task.runline``."""


@dataclass(frozen=True)
class GpuLayout:
    """The GPUs of one node of an endpoint, as its template declares them.

    Parameters
    ----------
    devices : tuple of str
        Device ids of one node, in the form the visible-devices variable takes (``"0"``, or
        ``"0.1"`` for an Intel tile).
    env : str
        The vendor's visible-devices variable.
    bind : str
        ``"launcher"`` (``srun --gpus-per-task``) or ``"wrapper"`` (lock files + per-rank wrapper).
    slots_per_node : int
        Tasks that may hold a node at once (how many ways its GPUs can be shared).
    """

    devices: tuple[str, ...]
    env: str
    bind: str
    slots_per_node: int = 1

    @property
    def gpus_per_node(self) -> int:
        """GPUs on one node."""
        return len(self.devices)

    def describe(self) -> str:
        """One line for ``libe-gc doctor`` and logs."""
        how = (
            "srun binds each rank (--gpus-per-task)"
            if self.bind == "launcher"
            else f"a per-rank wrapper sets {self.env} from the local rank; devices claimed with lock files"
        )
        share = self.gpus_per_node // self.slots_per_node if self.slots_per_node <= self.gpus_per_node else 0
        packing = (
            f"{self.slots_per_node} task(s) per node at once, {share} GPU(s) each with auto_assign_gpus"
            if share
            else f"{self.slots_per_node} task slots per node share {self.gpus_per_node} GPU(s)"
        )
        return f"{self.gpus_per_node} GPU(s) per node [{','.join(self.devices)}] via {self.env}; {how}; {packing}"


@dataclass(frozen=True)
class GpuPlan:
    """The GPUs of one task.

    Parameters
    ----------
    num_gpus : int
        GPUs of the whole task.
    per_node : int
        GPUs on each of its nodes.
    per_rank : int
        Devices each rank sees.
    ranks_per_device : int
        Ranks that share one device (1 unless ranks outnumber the task's GPUs on a node).
    layout : GpuLayout
        The endpoint's layout.
    """

    num_gpus: int
    per_node: int
    per_rank: int
    ranks_per_device: int
    layout: GpuLayout

    def runner_args(self, timeout: float | None = None) -> dict[str, t.Any]:
        """Return what the endpoint-side runner needs to claim this task's devices.

        Parameters
        ----------
        timeout : float, optional
            Seconds the claim may wait for free devices (default :data:`CLAIM_TIMEOUT`).
        """
        return {
            "devices": list(self.layout.devices),
            "per_node": self.per_node,
            "env": self.layout.env,
            "lock_dir_env": LOCK_DIR_ENV,
            "timeout": CLAIM_TIMEOUT if timeout is None else float(timeout),
            "claim": portable_claim(),
        }


def layout_of(template: t.Any, options: t.Mapping[str, t.Any] | None, mpi_launcher: str) -> GpuLayout | None:
    """Return the GPU layout an endpoint rendered from ``template`` with ``options`` declares.

    Parameters
    ----------
    template : EndpointTemplate or None
        The template (None when unknown).
    options : Mapping or None
        The ``user_endpoint_config``.
    mpi_launcher : str
        The endpoint's MPI launcher (``srun`` binds through the launcher by default).

    Returns
    -------
    GpuLayout or None
        None when the template declares no GPUs.
    """
    from bundle.executor.launch import template_option

    if template is None:
        return None
    ids = template_option(template, options, "gpu_ids")
    count = template_option(template, options, "gpus_per_node")
    if ids:
        devices = tuple(str(i) for i in ids)
        if count and int(count) != len(devices):
            raise ResourceSpecificationError(
                f"gpu_ids lists {len(devices)} devices but gpus_per_node is {count}; make them agree "
                "(or drop gpus_per_node)"
            )
    elif count:
        devices = tuple(str(i) for i in range(int(count)))
    else:
        return None
    env = str(template_option(template, options, "gpu_env") or "CUDA_VISIBLE_DEVICES")
    bind = str(template_option(template, options, "gpu_bind") or "auto")
    if bind == "auto":
        bind = "launcher" if mpi_launcher == "srun" else "wrapper"
    slots = template_option(template, options, "slots_per_node") or template_option(
        template, options, "max_workers_per_block"
    )
    return GpuLayout(devices, env, bind, int(slots or 1))


def _count(name: str, value: t.Any) -> int | None:
    """Read a GPU count: any integer type but ``bool`` (NumPy integers too), returned as a Python ``int``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ResourceSpecificationError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def plan(
    layout: GpuLayout | None,
    template_name: str | None,
    num_gpus: int | None,
    auto_assign_gpus: bool | None,
    match_procs_to_gpus: bool | None,
    spec: t.Mapping[str, t.Any],
    num_procs_given: bool,
) -> tuple[GpuPlan | None, dict[str, t.Any]]:
    """Check a task's GPU request against the endpoint's layout; return the plan and the final MPI spec.

    Parameters
    ----------
    layout : GpuLayout or None
        From :func:`layout_of`.
    template_name : str or None
        For messages.
    num_gpus : int or None
        GPUs for the whole task (``MPIExecutor``'s meaning); 0 or None for none.
    auto_assign_gpus : bool
        Use the task's share of its nodes' GPUs: ``gpus_per_node // slots_per_node`` per node.
    match_procs_to_gpus : bool
        One rank per GPU: the task's ranks are set to its GPUs (``num_procs``, if given, must agree).
    spec : Mapping
        The task's normalized MPI ``resource_specification`` (``num_nodes``, ``ranks_per_node``,
        ``num_ranks``, ``launcher_options``).
    num_procs_given : bool
        Whether the caller gave a rank count (then ``match_procs_to_gpus`` checks it instead of setting it).

    Returns
    -------
    tuple
        ``(GpuPlan or None, spec)``; the spec gains ``--gpus-per-task`` (launcher binding) or a rank
        count (``match_procs_to_gpus``).

    Raises
    ------
    ResourceSpecificationError
        GPUs asked of a template without GPUs, more GPUs than the task's nodes have, GPUs that do not
        divide across the task's nodes, or ranks that do not divide the GPUs when matching.
    """
    gpus = _count("num_gpus", num_gpus)
    out = dict(spec)
    if not gpus and not auto_assign_gpus:
        if match_procs_to_gpus:
            raise ResourceSpecificationError(
                "match_procs_to_gpus needs GPUs: give num_gpus or auto_assign_gpus=True as well"
            )
        return None, out
    if layout is None:
        where = f"template {template_name!r}" if template_name else "an endpoint whose template is not named"
        fix = (
            "set gpus_per_node (and gpu_env) in user_endpoint_config"
            if template_name
            else "pass template=<the endpoint's template> to GlobusComputeExecutor"
        )
        raise ResourceSpecificationError(f"the task asks for GPUs but {where} declares none; {fix}")
    nodes = int(out["num_nodes"])
    gpn = layout.gpus_per_node
    if auto_assign_gpus and not gpus:
        gpus = nodes * max(1, gpn // max(1, layout.slots_per_node))
    assert gpus is not None
    if gpus % nodes:
        raise ResourceSpecificationError(
            f"num_gpus={gpus} does not divide across num_nodes={nodes}; ask for a multiple of {nodes} GPUs"
        )
    per_node = gpus // nodes
    if per_node > gpn:
        raise ResourceSpecificationError(
            f"num_gpus={gpus} on {nodes} node(s) is {per_node} GPU(s) per node but a node of this endpoint "
            f"({template_name!r} template) has {gpn}; ask for at most {gpn * nodes} GPU(s) or more nodes"
        )
    if match_procs_to_gpus:
        if num_procs_given and int(out["num_ranks"]) != gpus:
            raise ResourceSpecificationError(
                f"match_procs_to_gpus sets one rank per GPU ({gpus}) but num_procs={out['num_ranks']}; "
                "drop num_procs or make it equal num_gpus"
            )
        out.update(num_ranks=gpus, ranks_per_node=per_node)
    rpn = int(out["ranks_per_node"])
    if per_node % rpn == 0:
        per_rank, ranks_per_device = per_node // rpn, 1
    elif rpn % per_node == 0:
        per_rank, ranks_per_device = 1, rpn // per_node
    else:
        raise ResourceSpecificationError(
            f"{rpn} rank(s) per node cannot share {per_node} GPU(s) per node evenly; use a rank count per node "
            f"that divides or is a multiple of {per_node}, or match_procs_to_gpus=True"
        )
    gp = GpuPlan(gpus, per_node, per_rank, ranks_per_device, layout)
    if layout.bind == "launcher":
        # --gpus-per-node too: a step otherwise inherits the job's SLURM_GPUS_PER_NODE (all GPUs of the node).
        flag = f"--gpus-per-node={per_node}" + (f" --gpus-per-task={per_rank}" if ranks_per_device == 1 else "")
        out["launcher_options"] = " ".join(filter(None, [out.get("launcher_options"), flag]))
    return gp, out


def wrapper_script(env: str, per_rank: int, ranks_per_device: int) -> str:
    """Return the POSIX shell that exports ``env`` for one rank, then runs the app (``"$@"``).

    The node's claimed devices arrive in ``LIBE_GC_GPUS`` (or, for a task on several nodes, in
    ``LIBE_GC_GPU_MAP`` as ``node=ids`` words, matched against ``SLURMD_NODENAME`` or ``hostname``
    by host name, so ``x1`` and ``x1.cluster.org`` are one node; a rank on a node the map does not
    name fails, rather than take another node's devices); local rank ``r`` gets ``per_rank`` of
    them starting at ``(r // ranks_per_device) * per_rank``.  Where no launcher variable of
    :data:`LOCAL_RANK_VARS` is set, ``r`` is ``PMI_RANK``: MPICH's gforker, which the ``local``
    template launches with on one host, sets only that (there, the rank on the node).
    """
    rank = "${PMI_RANK:-0}"
    for var in reversed(LOCAL_RANK_VARS):
        rank = f"${{{var}:-{rank}}}"
    return (
        f"r={rank}; n=${{SLURMD_NODENAME:-$(hostname)}}; n=${{n%%.*}}; g=; k=0; "
        'for e in $LIBE_GC_GPU_MAP; do k=$((k+1)); [ "${e%%=*}" = "$n" ] && g=${e#*=}; done; '
        '[ -n "$g" ] || [ $k -gt 1 ] || g=$LIBE_GC_GPUS; '
        f'[ -n "$g" ] || {{ echo "{WRAPPER_NAME}: node $n of local rank $r is not among the nodes the task '
        'claimed GPUs on ($LIBE_GC_GPU_MAP)" >&2; exit 1; }; '
        f"lo=$(( r / {ranks_per_device} * {per_rank} )); hi=$(( lo + {per_rank} )); i=0; d=; "
        "IFS=,; for x in $g; do [ $i -ge $lo ] && [ $i -lt $hi ] && d=${d:+$d,}$x; i=$((i+1)); done; unset IFS; "
        f'[ -n "$d" ] || {{ echo "{WRAPPER_NAME}: local rank $r on $n has no GPU (devices: $g)" >&2; exit 1; }}; '
        f'export {env}="$d"; exec "$@"'
    )


def wrapper_tokens(gp: GpuPlan) -> list[str]:
    """Tokens put between the launcher and the app so each rank sees only its own device(s)."""
    return ["sh", "-c", wrapper_script(gp.layout.env, gp.per_rank, gp.ranks_per_device), WRAPPER_NAME]


def check_task_kind(kind: str, num_gpus: int | None, auto_assign_gpus: bool | None) -> None:
    """Refuse GPUs for Python tasks (their worker process is shared), saying what to use instead."""
    if kind == "python" and (num_gpus or auto_assign_gpus):
        raise ExecutorException(
            "num_gpus applies to MPI and shell apps; to pin Python functions to GPUs run them in GC-only mode on "
            "an endpoint with engine_type GlobusComputeEngine and gpus_per_node (one GPU per worker)"
        )


# --- endpoint side -------------------------------------------------------------------------------


def claim_devices(
    gpus: dict[str, t.Any], stop: t.Callable[[], bool] | None = None
) -> tuple[dict[str, str], list[t.Any]]:
    """Claim ``per_node`` free devices on each node of the running task; hold them until the handles close.

    Runs on the endpoint, inside the task's worker (sent by value: builtins and local imports only).
    Each device of a node has a lock file ``<lock dir>/<node>/gpu-<id>.lock``; a device is held
    while its file is ``flock``-ed, so a crashed task frees its devices with its process.  A
    per-node claim lock makes taking several devices atomic; when too few are free the claim
    waits until a running task ends, at most ``gpus["timeout"]`` seconds.

    The lock folder (``$<lock_dir_env>``, default ``<tmp>/libe-gc-gpus-<uid>``) and its node
    folders are the user's own, mode 0700: a folder of that name owned by someone else is refused
    (another user could otherwise hold the locks and block every GPU task), and one of the user's
    own with wider permissions (from an older version) is narrowed.  Node names are compared as
    hosts: ``x1`` and ``x1.cluster.org`` are one node (PBS node files list fully qualified names,
    ``hostname`` and Slurm short ones), ``localhost`` is this host.

    Parameters
    ----------
    gpus : dict
        ``devices``, ``per_node``, ``env``, ``lock_dir_env`` and ``timeout``, from :meth:`GpuPlan.runner_args`.
    stop : callable, optional
        Checked while waiting: when it returns True (the task was killed) the claim gives up at once
        and returns no devices.

    Returns
    -------
    tuple
        Environment for the app (``LIBE_GC_GPUS``, ``LIBE_GC_GPU_MAP`` and, for a serial app, the
        visible-devices variable) and the open lock files (close them to release the devices); an
        empty environment and no handles when ``stop`` ended the wait.

    Raises
    ------
    TimeoutError
        When the devices did not become free within ``gpus["timeout"]`` seconds.
    PermissionError
        When the lock folder is not the user's own.
    """
    import fcntl
    import os
    import socket
    import stat
    import tempfile
    import time

    def node_name(name: str) -> str:
        if name in ("localhost", "127.0.0.1", "::1"):
            name = socket.gethostname()
        if ":" in name or name.replace(".", "").isdigit():
            return name  # an address: compared whole
        return name.split(".")[0]

    def own_folder(path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise PermissionError(
                f"GPU lock folder {path} is not a folder of this user (uid {os.getuid()}); another user could hold "
                f"its locks and block every GPU task: remove it, or set {gpus['lock_dir_env']} on the endpoint "
                "(worker_init) to a folder of your own on node-local storage"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(path, 0o700)

    def lock_file(path: str) -> t.Any:
        return open(path, "a", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW, 0o600))

    listed = [n for n in os.environ.get("PARSL_MPI_NODELIST", "").split(",") if n]
    named = listed or [os.environ.get("SLURMD_NODENAME") or socket.gethostname()]
    # One global order (sorted) for claiming on several nodes, so two multi-node tasks never wait on each other.
    nodes = sorted(dict.fromkeys(node_name(n) for n in named))
    root = os.environ.get(gpus["lock_dir_env"]) or os.path.join(tempfile.gettempdir(), f"libe-gc-gpus-{os.getuid()}")
    own_folder(root)
    limit = gpus.get("timeout")
    deadline = None if limit is None else time.monotonic() + float(limit)
    held: list[t.Any] = []
    chosen: dict[str, list[str]] = {}
    delay = 0.01
    try:
        for node in nodes:
            folder = os.path.join(root, node.replace(os.sep, "_"))
            own_folder(folder)
            while True:
                with lock_file(os.path.join(folder, "claim.lock")) as guard:
                    fcntl.flock(guard, fcntl.LOCK_EX)
                    got: list[tuple[str, t.Any]] = []
                    for dev in gpus["devices"]:
                        fh = lock_file(os.path.join(folder, f"gpu-{dev}.lock"))
                        try:
                            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except OSError:
                            fh.close()
                            continue
                        got.append((dev, fh))
                        if len(got) == gpus["per_node"]:
                            break
                    if len(got) == gpus["per_node"]:
                        held += [fh for _, fh in got]
                        chosen[node] = [dev for dev, _ in got]
                        break
                    for _, fh in got:
                        fh.close()
                if stop is not None and stop():
                    for fh in held:
                        fh.close()
                    return {}, []
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"libe-gc: no {gpus['per_node']} free GPU(s) among {list(gpus['devices'])} on node {node} "
                        f"after {float(limit or 0):g} s: running tasks hold them (locks in {folder}). Run fewer tasks "
                        "per node (slots_per_node) or ask fewer GPUs per task; the bound is the executor's "
                        "pending_timeout, else one hour"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
    except BaseException:
        for fh in held:
            fh.close()
        raise
    # LIBE_GC_GPUS: the devices of the task's first node (a serial app's, or the wrapper's fallback).
    head = node_name(listed[0]) if listed else nodes[0]
    first = ",".join(chosen.get(head, chosen[nodes[0]]))
    env = {
        "LIBE_GC_GPUS": first,
        "LIBE_GC_GPU_MAP": " ".join(f"{n}={','.join(d)}" for n, d in chosen.items()),
        gpus["env"]: first,
    }
    return env, held


def portable_claim() -> t.Any:
    """Return a copy of :func:`claim_devices` that serializes by value (the endpoint need not import the bundle)."""
    from bundle.wire.byvalue import by_value

    return by_value(claim_devices)
