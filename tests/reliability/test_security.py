"""Security: no option injects YAML or shell, jobscripts quote input, sockets stay on loopback, secrets never leak.

* Every option of every template (presets included, and any option added later: the test walks the
  schemas) is given YAML and shell payloads: the schema and globus-compute-endpoint's own renderer refuse
  them, except ``worker_init`` (the user's own shell), which stays one YAML string holding the payload once.
* The jobscripts run (without a scheduler) with hostile arguments and environment: no payload runs.
* While a local endpoint runs on each engine, the OS (``psutil.net_connections`` and ``ss``) shows that
  every socket its processes listen on, or connect through, is on loopback.
* With a client id, a client secret and a token in the environment, ensembles run in both modes with a
  failing sim and a failing MPI app, and ``libe-gc doctor`` runs; every file written (workflow dirs,
  ensemble.log, libE_stats.txt, GC-only error files, the engines' run dirs with Parsl's logs and submit
  scripts, the driver's stdout and stderr) is searched for the secret values.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time
import typing as t
import uuid

import jsonschema
import psutil
import pytest
import yaml

from bundle.endpoints.local import LocalEndpoint, reaper
from bundle.endpoints.templates import get_template, jobscripts_dir, list_templates
from bundle.errors import TemplateOptionError
from tests.reliability import guard_helpers as gh

TEMPLATES = list_templates()
FREE_TEXT = {"worker_init"}
"""Options that are the user's own shell, run as the user: they must stay one YAML string, nothing more."""

YAML_PAYLOADS = [
    "x\ny",
    "x\r\ny",
    "x\u2028y",
    'x"\nengine:\n  type: ThreadPoolEngine\n#',
    "x'\n  address: 0.0.0.0\n#",
    "x: y",
    "- x",
    "&anchor x",
    "*anchor",
    "!!python/object/apply:os.system ['id']",
    "{a: b}",
    "[a, b]",
    "| x",
    "> x",
    "# x",
    "%YAML 1.1",
    "x\x00y",
    "{{ 7*7 }}",
    "{% raw %}x",
]
SHELL_PAYLOADS = [
    "x$(touch /tmp/libe-gc-pwned)",
    "x`id`",
    "x;id",
    "x&&id",
    "x|id",
    "x>/tmp/libe-gc-pwned",
    "x y",
    "${IFS}id",
    "x\\",
    "x\n#SBATCH --uid=0",
    "x\n#PBS -l select=999",
    "~root",
    "*",
]
PAYLOADS = YAML_PAYLOADS + SHELL_PAYLOADS


def _required(name: str) -> dict[str, t.Any]:
    return {key: "abc123" for key in get_template(name).schema.get("required", [])}


def _endpoint_render(name: str, options: dict[str, t.Any]) -> str:
    """Render with globus-compute-endpoint's own renderer only, as a template-capable endpoint does."""
    from globus_compute_endpoint.endpoint.config.utils import load_config_yaml, render_config_user_template
    from globus_compute_endpoint.endpoint.identity_mapper import MappedPosixIdentity

    tmpl = get_template(name)
    identity = MappedPosixIdentity(
        local_user_record=pwd.getpwuid(os.getuid()), matched_identity=uuid.UUID(int=0), globus_identity_candidates=[]
    )
    text: str = render_config_user_template(
        parent_config=load_config_yaml(tmpl.config_path.read_text()),
        user_config_template=tmpl.template_path.read_text(),
        user_config_template_path=tmpl.template_path,
        mapped_identity=identity,
        user_config_schema=tmpl.schema,
        user_opts=options,
        user_runtime={},
    )
    return text


def _kind(prop: dict[str, t.Any]) -> str:
    """How an option keeps payloads out; a new kind of option fails the test until it is classified."""
    if prop.get("type") == "string" and "pattern" in prop:
        return "pattern"
    if "enum" in prop:
        return "enum"
    if prop.get("type") in ("integer", "boolean"):
        return prop["type"]
    if prop.get("type") == "array" and "enum" in prop.get("items", {}):
        return "list of enum"
    if prop.get("type") == "array" and prop.get("items", {}).get("type") == "string" and "pattern" in prop["items"]:
        return "list of pattern"
    if prop.get("type") == "string" and "maxLength" in prop:
        return "free text"
    raise AssertionError(f"option kind not classified for injection checks: {prop}")


INERT_FORBIDS = "\n\r\u2028\"'`$;\\ \t#{}<>()~%!\x00"
"""Characters no accepted scheduler string may hold."""


def _replace(value: t.Any, old: str, new: str) -> t.Any:
    """``value`` (a loaded YAML document) with every string equal to ``old`` replaced by ``new``."""
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return new if value == old else value


def _shape(value: t.Any) -> t.Any:
    """The structure of a loaded YAML document, with worker_init's text left out."""
    if isinstance(value, dict):
        return {k: ("<worker_init>" if k == "worker_init" else _shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_option_of_any_template_injects_yaml_or_shell(name: str, request: pytest.FixtureRequest) -> None:
    from globus_compute_endpoint.endpoint.config.utils import _validate_user_opts

    tmpl = get_template(name)
    jsonschema.validators.validator_for(tmpl.schema).check_schema(tmpl.schema)
    endpoint_validator = jsonschema.validators.validator_for(tmpl.schema)(tmpl.schema)
    base = _required(name)
    benign = yaml.safe_load(tmpl.render({**base, "worker_init": "abc"}))
    checked = refused = 0
    accepted: list[str] = []
    for option, prop in tmpl.schema["properties"].items():
        kind = _kind(prop)
        values: list[t.Any] = list(PAYLOADS)
        if kind == "list of enum":
            values += [[p, "globus_compute_sdk.*Data"] for p in PAYLOADS]
        if kind == "list of pattern":  # each payload as an item, alone and after a valid one
            values += [[p] for p in PAYLOADS] + [[*prop.get("examples", [["0"]])[0][:1], p] for p in PAYLOADS]
        for value in values:
            opts = {**base, option: value}
            checked += 1
            if option in FREE_TEXT:
                assert kind == "free text"
                if "\x00" in value:  # YAML cannot hold NUL: the endpoint's loader refuses the document
                    continue
                doc = yaml.safe_load(_endpoint_render(name, opts))
                assert _shape(doc) == _shape(benign), f"{name}.{option}={value!r} changed the configuration"
                # The value once, verbatim, beside the template's own text (which may hold it too, as "*")
                own = benign["engine"]["provider"]["worker_init"].replace("abc", "", 1).count(value)
                assert doc["engine"]["provider"]["worker_init"].count(value) == own + 1
                continue
            try:
                tmpl.validate(opts)
            except TemplateOptionError as err:
                assert err.option.split(".")[0] == option, (option, value, err.option)
                # What a real endpoint runs first refuses it too: its own function once per option, then the
                # same validation without re-checking the schema itself each time (that dominates the cost).
                with pytest.raises(jsonschema.ValidationError):
                    _validate_user_opts(opts, tmpl.schema) if value == values[0] else endpoint_validator.validate(opts)
                refused += 1
                continue
            # Accepted (scheduler syntax such as Slurm's constraint "gpu&hbm80g|a*"): it must be inert, with
            # nothing that ends a line, closes a quote or starts a shell expansion, and change only its own value.
            assert isinstance(value, str) and not set(value) & set(INERT_FORBIDS), (name, option, value)
            doc = yaml.safe_load(_endpoint_render(name, opts))
            plain = yaml.safe_load(_endpoint_render(name, {**base, option: "abc"}))
            assert _replace(doc, value, "abc") == plain, f"{name}.{option}={value!r} changed the configuration"
            accepted.append(f"{option}={value}")
    assert checked >= len(tmpl.schema["properties"]) * len(PAYLOADS)
    assert (
        refused + len(accepted) + sum(1 for o in FREE_TEXT if o in tmpl.schema["properties"]) * len(PAYLOADS) >= checked
    )
    request.node.user_properties.append(
        ("payloads", f"{checked} checked, {refused} refused, accepted inert: {accepted}")
    )


def test_allowed_serializers_renders_as_a_list_the_engine_loads() -> None:
    allowed = ["globus_compute_sdk.serialize.DillCode", "globus_compute_sdk.serialize.DillDataBase64"]
    for name in TEMPLATES:
        opts = {**_required(name), "allowed_serializers": allowed}
        assert yaml.safe_load(get_template(name).render(opts))["engine"]["allowed_serializers"] == allowed
        config, _ = get_template(name).load_offline(opts)
        assert sorted(c.__name__ for c in config.engine.serde.allowed_deserializer_types) == [
            "DillCode",
            "DillDataBase64",
        ]
        assert "allowed_serializers" not in yaml.safe_load(get_template(name).render(_required(name)))["engine"]


# --- jobscripts -------------------------------------------------------------------------------------------------


def _bash(script: str, args: list[str], env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(jobscripts_dir() / script), *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_jobscripts_pass_hostile_input_verbatim_and_run_none_of_it(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    hostile = [f"$(touch {marker})", f"`touch {marker}`", f"a;touch {marker}", f"b&&touch {marker}", "c'd\"e", "*"]
    probe = tmp_path / "probe.py"
    probe.write_text("import json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n")
    base = {"LIBE_GC_PYTHON": sys.executable, "SLURM_SUBMIT_DIR": str(tmp_path), "PBS_O_WORKDIR": str(tmp_path)}

    out = _bash("slurm/ensemble.sbatch", [str(probe), *hostile], base, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == hostile, "each argument reaches the script verbatim"

    out = _bash(
        "pbs/ensemble.qsub", [], {**base, "LIBE_GC_SCRIPT": str(probe), "LIBE_GC_ARGS": " ".join(hostile)}, tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == " ".join(hostile).split()

    dry = {**base, "LIBE_GC_DRY_RUN": "1"}
    refused = [
        ("slurm/endpoint.sbatch", [f"ep;touch {marker}"], {}, "endpoint name"),
        ("slurm/endpoint.sbatch", ["ep", f"partition=a;touch {marker}"], {"LIBE_GC_TEMPLATE": "slurm"}, "partition"),
        ("slurm/endpoint.sbatch", ["ep"], {"LIBE_GC_TEMPLATE": f"local;touch {marker}"}, "no endpoint template"),
        ("pbs/endpoint.qsub", [], {"LIBE_GC_OPTIONS": f"$(touch {marker})"}, "key=value"),
        ("pbs/endpoint.qsub", [], {"LIBE_GC_ENDPOINT": f"x`touch {marker}`"}, "endpoint name"),
    ]
    for script, args, env, says in refused:
        out = _bash(script, args, {**dry, **env}, tmp_path)
        assert out.returncode != 0, (script, args, env, out.stdout)
        assert says in out.stdout + out.stderr, (script, says, out.stdout[-500:], out.stderr[-500:])
    # worker_init is the user's own shell: rendered as text into the config, never run by the jobscript
    out = _bash("slurm/endpoint.sbatch", ["ep", f"worker_init=touch {marker}"], dry, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"touch {marker}" in out.stdout
    assert not marker.exists(), "a payload ran"


def test_jobscripts_quote_every_expansion() -> None:
    """shellcheck at style severity flags unquoted expansions (SC2086, SC2046) and unsafe reads (SC2162)."""
    found = shutil.which("shellcheck", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    assert found, "shellcheck not found: install the test extras"
    scripts = sorted(p for p in jobscripts_dir().rglob("*") if p.suffix in (".sbatch", ".qsub"))
    assert len(scripts) == 4
    out = subprocess.run([found, "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    # shellcheck itself catches an unquoted expansion (the check can fail)
    bad = subprocess.run(
        [found, "--severity=style", "-s", "bash", "-"], input='x="$1"\nrm $x\n', capture_output=True, text=True
    )
    assert "SC2086" in bad.stdout


# --- sockets ------------------------------------------------------------------------------------------------


def _ss_sockets(pids: set[int]) -> list[tuple[str, str]]:
    """(state, local address) of the TCP sockets ``ss`` lists for ``pids``."""
    found = shutil.which("ss")
    if found is None:
        return []
    out = subprocess.run([found, "-tanpH"], capture_output=True, text=True, timeout=30).stdout
    rows = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            cols = line.split()
            rows.append((cols[0], cols[3]))
    return rows


def _is_loopback(ip: str) -> bool:
    """Whether an address (as psutil gives it, or ``ss``'s ``addr:port``) is on loopback."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        host = ip.rsplit(":", 1)[0].strip("[]").split("%")[0]
        if host == "*":
            return False
        addr = ipaddress.ip_address(host)
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool((mapped or addr).is_loopback)


def test_local_endpoint_sockets_are_on_loopback_only_per_the_os(
    tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    eps = [
        LocalEndpoint(
            user_endpoint_config=gh.MPI_OPTS,
            resource_specification={"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1},
            run_dir=tmp_path / "mpi",
        ),
        LocalEndpoint(user_endpoint_config=gh.PY_OPTS, run_dir=tmp_path / "py"),
    ]
    try:
        for ep in eps:
            ep.start()
        for ep in eps:
            assert ep.wait_ready(90)
        assert eps[0].submit(pow, 2, 3).result(timeout=120) == 8  # traffic on every socket
        assert eps[1].submit(pow, 3, 2).result(timeout=120) == 9
        # These endpoints' processes (interchanges, blocks, worker pools, workers): other engines of this
        # session (a Slurm template's interchange listens for remote workers on purpose) are not looked at.
        roots = [pid for ep in eps for host in ep._hosts.values() for pid in host._root_pids()]
        pids = set(reaper.descendants(roots))
        conns = [c for c in psutil.net_connections(kind="inet") if c.pid in pids]
        listening = [c for c in conns if c.status == psutil.CONN_LISTEN]
        # ... and the driver's side of each engine: the three ports its executor binds for the interchange
        # (tasks, results, commands), and every connection to or from these ports
        htexes = [host.engine.executor for ep in eps for host in ep._hosts.values()]
        driver_ports = {q.port for ex in htexes for q in (ex.outgoing_q, ex.incoming_q, ex.command_client)}
        assert None not in driver_ports and len(driver_ports) == 3 * len(htexes)
        ports = {c.laddr.port for c in listening} | driver_ports
        mine = [
            c
            for c in psutil.Process().net_connections(kind="inet")
            if c.laddr.port in ports or (c.raddr and c.raddr.port in ports)
        ]
        listening += [c for c in mine if c.status == psutil.CONN_LISTEN]
        assert {c.laddr.port for c in listening} >= driver_ports, "the OS shows every port the driver side binds"
        conns += [c for c in mine if c.raddr]
        connected = [c for c in conns if c.raddr]
        ss_rows = _ss_sockets(pids)
    finally:
        for ep in eps:
            ep.shutdown(wait=False, cancel_futures=True)
    summary = (
        f"{len(pids)} processes, {len(listening)} listening sockets "
        f"({sorted({c.laddr.port for c in listening})}), {len(connected)} connected, {len(ss_rows)} rows from ss"
    )
    request.node.user_properties.append(("sockets", summary))
    gh.report(request, "loopback check (both engines)", summary)
    assert len(listening) >= 2, f"each interchange listens: {summary}"
    for conn in listening + connected:
        assert _is_loopback(conn.laddr.ip), conn
        if conn.raddr:
            assert _is_loopback(conn.raddr.ip), conn
    if shutil.which("ss"):
        assert ss_rows, "ss lists the engine's sockets too"
        assert all(_is_loopback(addr) for _, addr in ss_rows), ss_rows


# --- secrets ------------------------------------------------------------------------------------------------


def scan(root: pathlib.Path, needles: t.Sequence[str]) -> tuple[int, int, list[str]]:
    """Search every file under ``root`` for ``needles`` (as bytes); return (files, bytes, hits)."""
    files = size = 0
    hits = []
    raw = [n.encode() for n in needles]
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        files += 1
        size += len(data)
        hits += [f"{path}: {needle.decode()[:4]}..." for needle in raw if needle in data]
    return files, size, hits


@pytest.mark.slow
def test_secrets_never_reach_logs_stats_or_errors(tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> None:
    env_secrets = {
        "GLOBUS_COMPUTE_CLIENT_ID": str(uuid.uuid4()),
        "GLOBUS_COMPUTE_CLIENT_SECRET": secrets.token_urlsafe(32),
        "MY_FACILITY_API_TOKEN": "tok_" + secrets.token_hex(20),
    }
    root = tmp_path / "written"
    (root / "run").mkdir(parents=True)
    app = tmp_path / "app.sh"
    app.write_text('#!/bin/sh\necho "app ran with code $1"\necho "app error output" >&2\nexit "$1"\n')
    app.chmod(0o755)
    env = {**os.environ, **env_secrets, "PYTHONPATH": str(gh.REPO)}
    driver = subprocess.run(
        [sys.executable, "-m", "tests.reliability.secret_run", str(root / "run"), str(app)],
        env=env,
        cwd=gh.REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (root / "driver.stdout").write_text(driver.stdout)
    (root / "driver.stderr").write_text(driver.stderr)
    assert driver.returncode == 0, driver.stderr[-3000:]
    # the runs did what they are here for: a failing MPI app, a raising sim, failed GC-only sims
    assert "executor-mpi-app-fails: flag 0, sims ended 4, f [0.0, 3.0, 0.0, 3.0]" in driver.stdout, driver.stdout
    assert "executor-sim-raises: run raised" in driver.stdout and "failed on purpose" in driver.stdout
    assert re.search(r"gconly: flag 0, sims ended 8, failed \[\d", driver.stdout), driver.stdout
    for args, name in ((["doctor"], "doctor"), (["doctor", "--endpoint", str(uuid.uuid4())], "doctor-endpoint")):
        out = subprocess.run(
            [sys.executable, "-m", "bundle.cli", *args],
            env={**env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        (root / f"{name}.stdout").write_text(out.stdout)
        (root / f"{name}.stderr").write_text(out.stderr)
        assert "credentials" in out.stdout and "values not shown" in out.stdout, out.stdout[-2000:]

    # the scan can fail: a planted value is found
    control = tmp_path / "control"
    control.mkdir()
    (control / "leak.log").write_text(f"oops {env_secrets['GLOBUS_COMPUTE_CLIENT_SECRET']}\n")
    assert scan(control, list(env_secrets.values()))[2]

    files, size, hits = scan(root, list(env_secrets.values()))
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    summary = f"{files} files ({size} bytes) scanned for {len(env_secrets)} secret values: {len(hits)} found"
    request.node.user_properties.append(("secret_scan", summary))
    gh.report(request, "secrets scan", summary)
    assert not hits, hits
    # the files that matter were there to scan
    for pattern in (
        "run/executor-mpi-app-fails/ensemble.log",
        "run/executor-mpi-app-fails/libE_stats.txt",
        "run/executor-sim-raises/ensemble.log",
        "run/gconly/ensemble.log",
        "run/gconly/libE_stats.txt",
        "run/gconly/gconly_sim_errors/sim_*.txt",
        "run/*-engine/engine-0/*/interchange.log",
        "run/*-engine/engine-0/*/block-0/*/manager.log",
        "run/*-engine/engine-0/*/block-0/*/worker_*.log",
        "run/*-engine/engine-0/submit_scripts/*.sh",
        "run/executor-mpi-app-fails/libe_task_app_*.err",
        "driver.stderr",
        "doctor-endpoint.stdout",
    ):
        assert list(root.glob(pattern)), f"nothing written matches {pattern}: {sorted(written)}"
    assert files >= 40


# --- allowed_serializers ------------------------------------------------------------------------------------

BUNDLE_SERIALIZERS = ["globus_compute_sdk.serialize.DillCode", "globus_compute_sdk.serialize.DillDataBase64"]


def test_allowed_serializers_refuses_other_strategies_on_the_real_engine(tmp_path, monkeypatch):
    """The bundle's own traffic passes the documented allowlist; anything serialized otherwise is refused."""
    from globus_compute_sdk.errors import TaskExecutionFailed
    from globus_compute_sdk.serialize import ComputeSerializer, DillCodeSource, JSONData

    from bundle import GlobusComputeExecutor
    from bundle.endpoints.session import GCSession

    monkeypatch.chdir(tmp_path)
    hardened = {**gh.PY_OPTS, "allowed_serializers": BUNDLE_SERIALIZERS}
    try:
        ep = GCSession.get_executor("local", hardened, local_options={"run_dir": tmp_path / "engine"})
        assert ep.submit(gh.add_one, 1.0).result(timeout=120) == 2.0
        # the same endpoint refuses a function serialized as source text, and arguments as JSON
        for fn, strategies, refused in (
            (gh.double, {"strategy_code": DillCodeSource()}, "Code serializer DillCodeSource disabled"),
            (gh.add_one, {"strategy_data": JSONData()}, "Data serializer JSONData disabled"),
        ):
            ep.serializer = ComputeSerializer(**strategies)
            with pytest.raises(TaskExecutionFailed) as ei:
                ep.submit(fn, 1.0).result(timeout=120)
            assert refused in str(ei.value) and "Allowed serializers: DillCode, DillDataBase64" in str(ei.value)
        ep.serializer = ComputeSerializer()

        # GC-only mode and the executor (by-value runners, MPI apps) run under the documented allowlist
        H, _, flag, errors, _ = gh.run_gconly(gh.gconly_specs(gh.six_hump, 2, 4), 2, user_endpoint_config=hardened)
        assert flag == 0 and not errors and H["sim_ended"].sum() == 4
        exctr = GlobusComputeExecutor(
            "local", user_endpoint_config={**gh.MPI_OPTS, "allowed_serializers": BUNDLE_SERIALIZERS}
        )
        exctr.register_app("/bin/echo", app_name="echo")
        exctr.register_app("add", app_name="add", pyobj=gh.add_one)
        app = exctr.submit(app_name="echo", app_args="hardened", num_procs=2)
        app.wait(timeout=120)
        assert app.state == "FINISHED" and app.read_stdout().split() == ["hardened", "hardened"]
        assert exctr.submit(app_name="add", args=(41.0,)).result(timeout=120) == 42.0

        # without DillCode the bundle's functions (sent by value with dill) are refused, saying why
        source_only = {
            **gh.PY_OPTS,
            "allowed_serializers": ["globus_compute_sdk.serialize.DillCodeSource", BUNDLE_SERIALIZERS[1]],
        }
        H, _, flag, errors, _ = gh.run_gconly(gh.gconly_specs(gh.six_hump, 2, 2), 2, user_endpoint_config=source_only)
        assert flag == 0 and len(errors) == 2
        assert all("Code serializer DillCode disabled" in text for text in errors.values()), errors
    finally:
        GCSession.clear()


MPI_LAUNCHERS = ("mpiexec", "mpiexec.hydra", "hydra_pmi_proxy", "mpiexec.gforker", "srun")
"""Names of MPI launcher processes (MPICH's Hydra and its proxy, MPICH's gforker, Slurm's srun)."""


def _launcher_of(pid: int) -> str | None:
    """The MPI launcher ``pid`` is or runs below (a rank), "" if none; None if it is gone."""
    try:
        proc: psutil.Process | None = psutil.Process(pid)
        while proc is not None:
            if proc.name() in MPI_LAUNCHERS:
                return proc.name()
            proc = proc.parent()
    except psutil.Error:
        return None
    return ""


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def _listening_during(endpoint: LocalEndpoint, command: str) -> tuple[dict[tuple[str, int], set[str]], set[str], bool]:
    """Run ``command`` as a 2-rank MPIFunction; return the listening sockets seen (and their owners' names).

    Also the launchers the ranks ran below, and whether an endpoint process (not below a launcher) was seen.
    """
    from globus_compute_sdk import MPIFunction

    endpoint.resource_specification = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
    try:
        fut = endpoint.submit(MPIFunction(command))
        owners: dict[tuple[str, int], set[str]] = {}
        launchers: set[str] = set()
        endpoint_seen = False
        while not fut.done():
            # Read every time: the first submit may still be starting the engine (no interchange, no block yet).
            roots = [pid for host in list(endpoint._hosts.values()) for pid in host._root_pids()]
            for pid in set(reaper.descendants(roots)):  # each process's own sockets: a shared one shows in each
                try:
                    listening = [c for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"]
                except psutil.Error:
                    continue
                launcher, name = _launcher_of(pid), _name(pid)
                for conn in listening:
                    if launcher and name == "python":
                        launchers.add(launcher)
                    endpoint_seen |= launcher == ""
                    owners.setdefault((conn.laddr.ip, conn.laddr.port), set()).add(name)
            time.sleep(0.1)
        result = fut.result(timeout=120)
        assert result.returncode == 0, result.stderr
    finally:
        endpoint.resource_specification = None
    return owners, launchers, endpoint_seen


RANKS_WAIT = "python -c 'from mpi4py import MPI; import time; MPI.COMM_WORLD.Barrier(); time.sleep(4)'"
"""A 2-rank app that holds its MPI sockets open for a few seconds."""


def test_during_an_mpi_task_nothing_listens_beyond_loopback(
    mpi_endpoint: LocalEndpoint, request: pytest.FixtureRequest
) -> None:
    """While a 2-rank MPI app runs on the local template, the endpoint's processes and the ranks listen on loopback.

    The template's worker_init keeps MPICH's ranks on loopback (``UCX_NET_DEVICES``, ``FI_TCP_IFACE``, ...) and
    hands the launch on this host to MPICH's gforker, which listens on no socket (Hydra binds its control port on
    every interface, and no option moves it).
    """
    owners, launchers, endpoint_seen = _listening_during(mpi_endpoint, RANKS_WAIT)
    outside = {k: sorted(v) for k, v in owners.items() if not _is_loopback(k[0])}
    summary = f"{len(owners)} listening sockets seen during a 2-rank MPI task, {len(outside)} beyond loopback"
    summary += f" {outside}" if outside else ""
    request.node.user_properties.append(("sockets_during_mpi", summary))
    gh.report(request, "listening sockets during an MPI task", summary)
    assert endpoint_seen, "the interchange's socket is seen too"
    assert launchers == {"mpiexec.gforker"}, f"the ranks' sockets are seen, below gforker: {launchers}"
    assert outside == {}, summary


def test_a_launch_with_hydras_own_options_still_goes_to_hydra(mpi_endpoint: LocalEndpoint) -> None:
    """Launcher options gforker does not know (here Hydra's ``-bind-to``) keep the launch on Hydra, unchanged.

    Then Hydra's control port is the one socket beyond loopback (docs/troubleshooting.rst says so).
    """
    owners, launchers, _ = _listening_during(mpi_endpoint, "-bind-to none " + RANKS_WAIT)
    assert launchers == {"hydra_pmi_proxy"}, launchers
    outside = {k: sorted(v) for k, v in owners.items() if not _is_loopback(k[0])}
    assert len(outside) == 1 and {"mpiexec", "mpiexec.hydra"} & set(next(iter(outside.values()))), outside
