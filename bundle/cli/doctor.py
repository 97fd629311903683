"""``libe-gc doctor``: check what breaks runs in the field, and say how to fix each.

Every check returns a :class:`Check` with a status (``ok``, ``warn`` or
``fail``), what was found, and what to do about it.  Secrets are never shown:
for credentials only whether they are set is reported.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import typing as t
from importlib import metadata

from bundle.endpoints.python_check import FAIL, OK, WARN, Check, compare_endpoint

SECRET_VARS = ("GLOBUS_COMPUTE_CLIENT_SECRET", "GLOBUS_COMPUTE_CLIENT_ID")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_versions() -> list[Check]:
    """Python and the packages whose versions must match between submit side and endpoint."""
    py = platform.python_version()
    checks = [Check("Python (submit side)", OK, f"{py} at {sys.executable}")]
    for dist, why in (
        ("globus-compute-sdk", "serializes functions and results"),
        ("globus-compute-endpoint", "runs the local endpoint's engine"),
        ("parsl", "the engine's executor"),
        ("libensemble", "the ensemble driver"),
        ("dill", "the default function serializer"),
    ):
        ver = _version(dist)
        if ver is None:
            checks.append(Check(dist, FAIL, "not installed", f"pip install {dist} ({why})"))
        else:
            checks.append(Check(dist, OK, ver))
    return checks


def check_launchers(path: str | None = None) -> list[Check]:
    """MPI launchers on ``PATH`` (and beside this interpreter)."""
    search = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), path or os.environ.get("PATH", "")]))
    checks = []
    for cmd in ("mpiexec", "srun", "aprun"):
        found = shutil.which(cmd, path=search)
        if found is None:
            status = FAIL if cmd == "mpiexec" and not shutil.which("srun", path=search) else WARN
            fix = {
                "mpiexec": "pip install 'libe-gc-bundle[mpich]', or load your site's MPI module",
                "srun": "needed only for mpi_launcher=srun (Slurm sites)",
                "aprun": "needed only for mpi_launcher=aprun (Cray ALPS sites)",
            }[cmd]
            checks.append(Check(f"launcher {cmd}", status, "not found", fix))
            continue
        first = ""
        try:
            out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10)
            lines = [ln.strip() for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
            versioned = [ln for ln in lines if "version" in ln.lower() and any(ch.isdigit() for ch in ln)]
            first = " ".join((versioned or lines or [""])[0].split())
        except (OSError, subprocess.TimeoutExpired):
            pass
        checks.append(Check(f"launcher {cmd}", OK, f"{found}" + (f" ({first})" if first else "")))
    return checks


def check_scheduler(environ: t.Mapping[str, str] | None = None) -> Check:
    """Which batch scheduler this runs under, or can submit to."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        return Check("scheduler", OK, f"inside Slurm job {env['SLURM_JOB_ID']} ({env.get('SLURM_JOB_NODELIST', '?')})")
    if env.get("PBS_JOBID"):
        return Check("scheduler", OK, f"inside PBS job {env['PBS_JOBID']}")
    tools = [name for name, cmd in (("Slurm", "sbatch"), ("PBS", "qsub")) if shutil.which(cmd)]
    if tools:
        return Check("scheduler", OK, f"not in a job; can submit to {', '.join(tools)}")
    return Check(
        "scheduler",
        WARN,
        "none found",
        "fine for the local endpoint on a workstation; on a cluster load the scheduler's module",
    )


SCHEDULER_NAMES = {
    "partition": ("Slurm", ("sinfo", "--noheader", "--all", "--format=%R"), "sinfo --summarize"),
    "queue": ("PBS", ("qstat", "-Q"), "qstat -Q"),
}
"""Template options naming a scheduler's partition or queue: scheduler, the command listing them, what to run."""


def _listed_names(cmd: t.Sequence[str]) -> list[str] | None:
    """Names the scheduler command lists (partitions, queues), or None when no scheduler answers here."""
    found = shutil.which(cmd[0])
    if found is None:
        return None
    try:
        out = subprocess.run([found, *cmd[1:]], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    lines = out.stdout.splitlines()
    if cmd[0] == "qstat":  # a header, a line of dashes, then one queue per line
        dashes = [i for i, line in enumerate(lines) if line.startswith("---")]
        lines = lines[dashes[0] + 1 :] if dashes else []
    return sorted({line.split()[0] for line in lines if line.split()})


def check_scheduler_names(options: t.Mapping[str, t.Any]) -> list[Check]:
    """Check a ``partition`` (Slurm) or ``queue`` (PBS) option against the scheduler here, when one answers.

    Parameters
    ----------
    options : Mapping
        The ``--option`` values given.

    Returns
    -------
    list of Check
        One per such option given: ``fail`` when this machine's scheduler lists no such name; ``ok`` when
        it does, or when no scheduler answers here (then nothing could be checked, and the row says so).
    """
    checks = []
    for option, (scheduler, cmd, show) in SCHEDULER_NAMES.items():
        value = options.get(option)
        if value is None:
            continue
        names = _listed_names(cmd)
        row = f"{option} {value}"
        if names is None:
            checks.append(Check(row, OK, f"not checked: no {scheduler} answers here ({cmd[0]})"))
        elif str(value).split("@")[0] in names:
            checks.append(Check(row, OK, f"a {option} of this {scheduler} ({' '.join(cmd)})"))
        else:
            checks.append(
                Check(
                    row,
                    FAIL,
                    f"this {scheduler} has no {option} {value!r}; it has: {', '.join(names) or 'none'}",
                    f"use one of those (`{show}` lists them), or check where the endpoint submits its jobs",
                )
            )
    return checks


def check_credentials(environ: t.Mapping[str, str] | None = None, home: str | None = None) -> Check:
    """Report what the Globus Compute SDK would authenticate with, checked offline (whether, never what).

    See :func:`bundle.endpoints.credentials.credential_state`: a client identity, or a stored login with a
    refresh token or an unexpired access token for the Globus Compute service.
    """
    from bundle.endpoints.credentials import credential_state

    env = dict(os.environ if environ is None else environ)
    if home is not None:
        env["HOME"] = home
    state = credential_state(env)
    if state.usable:
        return Check("credentials", OK, state.detail)
    if state.kind == "invalid":
        return Check("credentials", FAIL, state.detail, state.fix)
    return Check("credentials", WARN, state.detail, f"only cloud endpoints need them: {state.fix}")


def check_template(name: str | None, options: dict[str, t.Any]) -> Check:
    """Validate template options against the template's schema."""
    from bundle.endpoints.templates import get_template
    from bundle.errors import BundleError

    if name is None:
        if options:
            return Check(
                "template options",
                FAIL,
                f"options {sorted(options)} given without --template, so they cannot be checked",
                "add --template NAME (libe-gc templates list), or --endpoint UUID to check them against that "
                "endpoint's published schema",
            )
        return Check("template options", OK, "no template given (use --template NAME --option k=v to check)")
    try:
        get_template(name).validate(options)
    except (BundleError, ValueError) as err:
        return Check(f"template {name}", FAIL, str(err).splitlines()[0], "fix the option named above")
    return Check(f"template {name}", OK, f"options {sorted(options)} valid" if options else "defaults valid")


def check_gpus(name: str | None, options: dict[str, t.Any]) -> Check:
    """Report the template's GPU layout: GPUs per node, the visible-devices variable, binding and packing."""
    from bundle.endpoints.templates import get_template
    from bundle.errors import BundleError
    from bundle.executor.gpus import layout_of
    from bundle.executor.launch import template_option

    if name is None:
        return Check("GPU layout", OK, "no template given (use --template NAME to see its GPU layout)")
    try:
        template = get_template(name)
        template.validate(options)
    except (BundleError, ValueError):
        return Check("GPU layout", WARN, "not read: the template options are invalid", "fix the options first")
    try:
        launcher = str(template_option(template, options, "mpi_launcher") or "mpiexec")
        layout = layout_of(template, options, launcher)
    except (BundleError, ValueError) as err:
        return Check("GPU layout", FAIL, str(err).splitlines()[0], "make gpus_per_node and gpu_ids agree")
    if layout is None:
        return Check(
            "GPU layout",
            OK,
            "no GPUs declared: tasks asking for num_gpus are refused at submit",
            "",
        )
    found = layout.describe()
    engine = template_option(template, options, "engine_type")
    if engine == "GlobusComputeEngine":
        pinned = bool(template_option(template, options, "pin_workers_to_gpus"))
        found += "; Python workers " + ("pinned one per GPU" if pinned else "not pinned (pin_workers_to_gpus)")
    return Check("GPU layout", OK, found)


def run_checks(template: str | None = None, options: dict[str, t.Any] | None = None) -> list[Check]:
    """Run every offline check.

    Parameters
    ----------
    template : str, optional
        Template whose options to validate.
    options : dict, optional
        The ``user_endpoint_config`` to validate.

    Returns
    -------
    list of Check
        In the order shown to the user.
    """
    return [
        *check_versions(),
        *check_launchers(),
        check_scheduler(),
        *check_scheduler_names(dict(options or {})),
        check_credentials(),
        check_template(template, dict(options or {})),
        check_gpus(template, dict(options or {})),
    ]


def check_endpoint(endpoint_id: str, options: dict[str, t.Any] | None = None, client: t.Any = None) -> list[Check]:
    """Ask the Globus Compute service what a cloud endpoint runs, and check options against its own schema.

    Parameters
    ----------
    endpoint_id : str
        The endpoint's UUID.
    options : dict, optional
        ``user_endpoint_config`` to validate against the schema the endpoint publishes.
    client : globus_compute_sdk.Client, optional
        Client to use (one is created otherwise, which needs credentials).

    Returns
    -------
    list of Check
        The Python comparison, and the options check when the endpoint publishes a schema.
    """
    if client is None:
        from bundle.endpoints.credentials import credential_state

        state = credential_state()
        if not state.usable and not (sys.stdin.isatty() and sys.stdout.isatty()):
            return [Check("endpoint metadata", FAIL, f"not asked: {state.detail}", state.fix)]
    try:
        if client is None:
            from globus_compute_sdk import Client

            client = Client()
        data = client.get_endpoint_metadata(endpoint_id)
    except Exception as err:  # network, credentials, unknown endpoint
        return [
            Check(
                "endpoint metadata",
                FAIL,
                f"could not read endpoint {endpoint_id}: {type(err).__name__}",
                "check the UUID, your network and credentials (`globus-compute-endpoint login`)",
            )
        ]
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else data
    checks = [compare_endpoint(platform.python_version(), meta.get("python_version"), meta.get("endpoint_version"))]
    schema = meta.get("user_config_schema")
    if not isinstance(schema, dict) and options:
        checks.append(
            Check(
                "options vs endpoint schema",
                FAIL,
                "the endpoint publishes no option schema, so the options cannot be checked",
                "add --template NAME (the template the endpoint was configured from)",
            )
        )
    if isinstance(schema, dict) and options is not None:
        import jsonschema

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(options))
        if error is None:
            checks.append(Check("options vs endpoint schema", OK, "valid for the endpoint's published schema"))
        else:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            checks.append(
                Check("options vs endpoint schema", FAIL, f"{where}: {error.message}", "change the option named")
            )
    return checks
