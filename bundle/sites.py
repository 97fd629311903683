"""Site presets, and the template files generated from the ``slurm`` and ``pbs`` templates.

A site preset (``perlmutter``, ``frontier``, ``polaris``, ``aurora``) is a full
template folder: the base template with the site's documented values as
defaults.  ``globus-compute-endpoint configure --template-config`` copies a
single file, so each preset's ``user_config_template.yaml.j2`` is
self-contained; this module keeps the copies in step with their base::

    python -m bundle.sites          # rewrite the generated files
    python -m bundle.sites --check  # exit 1 if any is out of date (a unit test runs this)

Generated: each preset folder, and the ``README.md`` of ``slurm``, ``pbs`` and
every preset (their option tables come from the schemas).
"""

from __future__ import annotations

import copy
import json
import pathlib
import sys
import typing as t
from dataclasses import dataclass, field

from bundle.templates import CONFIG_FILE, SCHEMA_FILE, TEMPLATE_FILE, endpoint_configs_dir

MARKER = "{#- site defaults (a site preset sets its documented values here) #}"
"""Line of the base templates after which a preset's defaults are inserted."""


@dataclass(frozen=True)
class SitePreset:
    """A machine's documented settings on top of a base template.

    Parameters
    ----------
    name : str
        Template name (its folder).
    base : str
        ``"slurm"`` or ``"pbs"``.
    title : str
        Machine and facility.
    summary : str
        What the defaults give, for the README.
    defaults : dict
        Defaults of user options (they stay options the user may change).
    internal : dict
        Template settings that are not user options (PBS launcher flags).
    required : tuple of str
        Options the user must give (the project to charge).
    examples : dict
        Example ``user_endpoint_config`` files, by file stem.
    sources : tuple of str
        Where the site documents the values.
    """

    name: str
    base: str
    title: str
    summary: str
    defaults: dict[str, t.Any]
    internal: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    examples: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


PRESETS: tuple[SitePreset, ...] = (
    SitePreset(
        name="perlmutter",
        base="slurm",
        title="NERSC Perlmutter (Slurm)",
        summary=(
            "CPU nodes in the debug QOS, whole nodes, `srun` as MPI launcher, workers reaching the endpoint over "
            "the Slingshot interface `hsn0`, and the scratch file system requested as a Slurm license. For GPU "
            "nodes set `constraint` to `gpu` and `gpus_per_node` to 4 (four NVIDIA A100 per node, bound per rank "
            "with `srun --gpus-per-task` and seen as `CUDA_VISIBLE_DEVICES`); for production runs set `qos` to "
            "`regular`."
        ),
        defaults={
            "qos": "debug",
            "constraint": "cpu",
            "licenses": "scratch",
            "network_interface": "hsn0",
            "mpi_launcher": "srun",
            "walltime": "00:30:00",
            "cmd_timeout": 120,
            "gpu_env": "CUDA_VISIBLE_DEVICES",
        },
        examples={
            "mpi": {
                "account": "m1234",
                "nodes_per_block": 2,
                "worker_init": "module load python; source activate myenv",
            },
            "gpu": {
                "account": "m1234",
                "constraint": "gpu",
                "gpus_per_node": 4,
                "slots_per_node": 4,
                "qos": "regular",
                "walltime": "02:00:00",
            },
            "python": {"engine_type": "GlobusComputeEngine", "account": "m1234", "max_workers_per_node": 64},
        },
        sources=(
            "https://docs.nersc.gov/jobs/policy/",
            "https://docs.nersc.gov/systems/perlmutter/architecture/ (GPU nodes: 4 NVIDIA A100)",
            "https://docs.nersc.gov/jobs/affinity/ (GPU binding with srun --gpus-per-task)",
            "https://github.com/globus/globus-compute/blob/main/docs/endpoints/configs/perlmutter.yaml",
        ),
    ),
    SitePreset(
        name="frontier",
        base="slurm",
        title="OLCF Frontier (Slurm)",
        summary=(
            "The `batch` partition, whole nodes, `srun` as MPI launcher (Frontier's supported launcher) and "
            "workers reaching the endpoint over the Slingshot interface `hsn0`. Each node has 4 AMD MI250X, "
            "seen as 8 GCDs (`gpus_per_node: 8`), bound per rank with `srun --gpus-per-task` and visible as "
            "`ROCR_VISIBLE_DEVICES`. Frontier requires a project: `account` must be given."
        ),
        defaults={
            "partition": "batch",
            "network_interface": "hsn0",
            "mpi_launcher": "srun",
            "walltime": "00:30:00",
            "cmd_timeout": 120,
            "gpus_per_node": 8,
            "gpu_env": "ROCR_VISIBLE_DEVICES",
        },
        required=("account",),
        examples={
            "mpi": {"account": "abc123", "nodes_per_block": 2, "worker_init": "module load cray-python"},
            "gpu": {"account": "abc123", "slots_per_node": 8},
            "python": {"engine_type": "GlobusComputeEngine", "account": "abc123", "max_workers_per_node": 56},
        },
        sources=(
            "https://docs.olcf.ornl.gov/systems/frontier_user_guide.html (node: 4 MI250X = 8 GCDs; "
            "srun --gpus-per-task)",
        ),
    ),
    SitePreset(
        name="polaris",
        base="pbs",
        title="ALCF Polaris (PBS Pro)",
        summary=(
            "The `debug` queue, the `home` and `eagle` file systems, nodes placed with `scatter`, 64 CPUs and 4 "
            "GPUs per node (NVIDIA A100; `mpiexec` ranks are bound by a per-rank wrapper setting "
            "`CUDA_VISIBLE_DEVICES` from `PMI_LOCAL_RANK`, as ALCF's `set_affinity_gpu_polaris.sh` does), workers "
            "reaching the endpoint over `bond0`, and, for GlobusComputeEngine, one worker "
            "pool per node started with `mpiexec --cpu-bind none --depth=64 --ppn 1` as ALCF's Parsl example does. "
            "Polaris requires a project: `account` must be given."
        ),
        defaults={
            "queue": "debug",
            "filesystems": "home:eagle",
            "place": "scatter",
            "cpus_per_node": 64,
            "select_options": "ngpus=4",
            "network_interface": "bond0",
            "walltime": "00:30:00",
            "gpus_per_node": 4,
            "gpu_env": "CUDA_VISIBLE_DEVICES",
        },
        internal={"gce_bind_cmd": "--cpu-bind", "gce_overrides": "--depth=64 --ppn 1"},
        required=("account",),
        examples={
            "mpi": {
                "account": "MyProject",
                "nodes_per_block": 2,
                "worker_init": "module use /soft/modulefiles; module load conda; conda activate",
            },
            "prod": {
                "account": "MyProject",
                "queue": "prod",
                "nodes_per_block": 16,
                "walltime": "03:00:00",
                "filesystems": "home:eagle",
            },
            "python": {"engine_type": "GlobusComputeEngine", "account": "MyProject", "max_workers_per_node": 32},
            "gpu": {"account": "MyProject", "slots_per_node": 4},
            "python_gpu": {"engine_type": "GlobusComputeEngine", "account": "MyProject", "pin_workers_to_gpus": True},
        },
        sources=(
            "https://docs.alcf.anl.gov/polaris/workflows/parsl/",
            "https://docs.alcf.anl.gov/polaris/hardware-overview/machine-overview/ (4 NVIDIA A100 per node)",
            "https://docs.alcf.anl.gov/polaris/running-jobs/ (GPU affinity: set_affinity_gpu_polaris.sh)",
            "https://github.com/Parsl/parsl/blob/master/parsl/configs/polaris.py",
            "https://github.com/globus/globus-compute/blob/main/docs/endpoints/configs/polaris.yaml",
        ),
    ),
    SitePreset(
        name="aurora",
        base="pbs",
        title="ALCF Aurora (PBS Pro)",
        summary=(
            "The `debug` queue, the `home` and `flare` file systems, nodes placed with `scatter`, 208 CPU threads "
            "per node, 6 Intel Data Center GPU Max (PVC) per node used as 12 tiles (`gpu_ids` `0.0` ... `5.1`, "
            "bound per rank through `ZE_AFFINITY_MASK` by a per-rank wrapper, as ALCF's `gpu_tile_compact.sh` does), "
            "workers reaching the endpoint over `bond0`, and, for GlobusComputeEngine, one worker pool "
            "per node started with `mpiexec --cpu-bind none --ppn 1`. Aurora requires a project: `account` must "
            "be given."
        ),
        defaults={
            "queue": "debug",
            "filesystems": "home:flare",
            "place": "scatter",
            "cpus_per_node": 208,
            "network_interface": "bond0",
            "walltime": "00:30:00",
            "gpu_ids": [f"{gpu}.{tile}" for gpu in range(6) for tile in range(2)],
            "gpu_env": "ZE_AFFINITY_MASK",
        },
        internal={"gce_bind_cmd": "--cpu-bind", "gce_overrides": "--ppn 1"},
        required=("account",),
        examples={
            "mpi": {"account": "MyProject", "nodes_per_block": 2, "worker_init": "module load frameworks"},
            "python": {"engine_type": "GlobusComputeEngine", "account": "MyProject", "max_workers_per_node": 12},
            "gpu": {"account": "MyProject", "slots_per_node": 12},
            "python_gpu": {"engine_type": "GlobusComputeEngine", "account": "MyProject", "pin_workers_to_gpus": True},
        },
        sources=(
            "https://docs.alcf.anl.gov/aurora/workflows/parsl/",
            "https://docs.alcf.anl.gov/aurora/hardware-overview/machine-overview/ (6 PVC GPUs, 12 tiles per node)",
            "https://docs.alcf.anl.gov/aurora/running-jobs-aurora/ (ZE_AFFINITY_MASK, gpu_tile_compact.sh)",
        ),
    ),
)

BASE_INTROS: dict[str, str] = {
    "slurm": (
        "Blocks of workers as Slurm batch jobs, for either engine. With `GlobusMPIEngine` (the default) one worker "
        "pool runs on the first node of each job and every `MPIFunction` task is launched across the job's nodes "
        "through `$PARSL_MPI_PREFIX` (`srun` or `mpiexec`); each task needs a `resource_specification` with integer "
        "`num_nodes`, `ranks_per_node` and `num_ranks` (the bundle's executors fill these in). With "
        "`GlobusComputeEngine` `srun` starts one worker pool per node for Python and `ShellFunction` tasks.\n\n"
        "Jobs request whole nodes (`exclusive: true`, the default): without `--exclusive` Slurm gives the job one "
        'CPU, and `srun --ntasks 2` inside it fails with "More processors requested than permitted".\n\n'
        "Parsl's MPI mode gives each task whole nodes. `slots_per_node: N` lets N tasks share a node: the job's "
        "node list is written to a node file with every node listed N times, and `srun` is told to give each "
        "task exactly the CPUs its ranks need (`SLURM_EXACT=1`). Use it for tasks with `num_nodes: 1`; a "
        "multi-node task may be handed the same node twice. On sites that track memory per job, add "
        "`export SLURM_MEM_PER_CPU=...` to `worker_init` so concurrent `srun` steps do not wait for each other's "
        "memory.\n\n"
        "GPUs: `gpus_per_node` requests them (`#SBATCH --gpus-per-node`) and declares the layout executor tasks' "
        "`num_gpus` is checked against. With `srun` each rank of a task is bound by Slurm (`--gpus-per-node` and "
        "`--gpus-per-task` join the task's launcher options); with `mpiexec` (`gpu_bind: wrapper`) the endpoint "
        "claims free devices with lock files and a per-rank wrapper sets `gpu_env` from the local rank. "
        "`slots_per_node: 4` on a 4-GPU node runs four one-GPU tasks at once, on disjoint devices. With "
        "`GlobusComputeEngine`, `pin_workers_to_gpus: true` pins one Python worker per GPU.\n\n"
        "When the engine shuts down it cancels its jobs; the bundle's local endpoint also has its watcher run "
        "`scancel` if the driver is killed.\n\n"
        "`allowed_serializers` hardens the workers: they deserialize submitted functions and arguments only "
        "with the strategies listed (the bundle's own tasks need `globus_compute_sdk.serialize.DillCode` and "
        "`globus_compute_sdk.serialize.DillDataBase64`; see the `local` template's README)."
    ),
    "pbs": (
        "Blocks of workers as PBS Pro batch jobs, for either engine. With `GlobusMPIEngine` (the default) one "
        "worker pool runs on the first node of each job and every `MPIFunction` task is launched across the "
        "job's nodes through `$PARSL_MPI_PREFIX` (`mpiexec`); each task needs a `resource_specification` with "
        "integer `num_nodes`, `ranks_per_node` and `num_ranks`. With `GlobusComputeEngine`, `mpiexec` starts one "
        "worker pool per node for Python and `ShellFunction` tasks.\n\n"
        "`PBS_NODEFILE` lists a node once per MPI process requested in the select statement; in MPI mode the "
        "template writes a node file listing each node of the job `slots_per_node` times (once by default, so "
        "each task gets whole nodes; more lets that many one-node tasks share a node).\n\n"
        "`queue` and `account` are passed to `qsub` and also written as `#PBS -q` / `#PBS -A` directives.\n\n"
        "GPUs: `gpus_per_node` (or `gpu_ids`) declares the layout executor tasks' `num_gpus` is checked against "
        "(request the GPUs themselves in `select_options`, e.g. `ngpus=4`). Ranks launched by `mpiexec` are "
        "bound by a per-rank wrapper that sets `gpu_env` from the local rank, on devices the endpoint claims "
        "with lock files so concurrent tasks never share one; `slots_per_node` lets several GPU tasks share a "
        "node. With `GlobusComputeEngine`, `pin_workers_to_gpus: true` pins one Python worker per GPU.\n\n"
        "`allowed_serializers` hardens the workers: they deserialize submitted functions and arguments only "
        "with the strategies listed (the bundle's own tasks need `globus_compute_sdk.serialize.DillCode` and "
        "`globus_compute_sdk.serialize.DillDataBase64`; see the `local` template's README)."
    ),
}


def _jinja_literal(value: t.Any) -> str:
    """Return the Jinja literal of an option value as the renderer passes it (strings arrive JSON-encoded)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        encoded = json.dumps(value)
        if "'" in encoded or "\\" in encoded:
            raise ValueError(f"preset default {value!r} cannot be written as a Jinja literal")
        return f"'{encoded}'"
    if isinstance(value, list):
        return "[" + ", ".join(_jinja_literal(v) for v in value) + "]"
    raise TypeError(f"unsupported preset default {value!r}")


def template_with_defaults(
    base_text: str, defaults: t.Mapping[str, t.Any], internal: t.Mapping[str, str] | None = None, header: str = ""
) -> str:
    """Return a template text whose options default to ``defaults``.

    Parameters
    ----------
    base_text : str
        A bundled template, containing the :data:`MARKER` line once.
    defaults : Mapping
        Option defaults (the user may still set those options).
    internal : Mapping, optional
        Template settings that are not user options.
    header : str
        Text put before the template (a Jinja comment).
    """
    if base_text.count(MARKER) != 1:
        raise ValueError(f"the template must contain the marker line once: {MARKER}")
    lines = [f"{{%- set {k} = {json.dumps(v)} %}}" for k, v in (internal or {}).items()]
    lines += [f"{{%- set {k} = {k} | default({_jinja_literal(v)}) %}}" for k, v in defaults.items()]
    return header + base_text.replace(MARKER, MARKER + "\n" + "\n".join(lines), 1)


def schema_with_defaults(
    base_schema: t.Mapping[str, t.Any], defaults: t.Mapping[str, t.Any], required: t.Sequence[str] = ()
) -> dict[str, t.Any]:
    """Return a copy of a schema whose ``default`` keywords are ``defaults`` and that requires ``required``.

    Options given a default are no longer required.
    """
    schema = copy.deepcopy(dict(base_schema))
    props = schema["properties"]
    for key in [*defaults, *required]:
        if key not in props:
            raise KeyError(f"{key!r} is not an option of this template; options: {', '.join(props)}")
    for key, value in defaults.items():
        props[key]["default"] = value
    # An option with a default no longer has to be given.
    still_required = sorted((set(schema.get("required", [])) | set(required)) - set(defaults))
    schema.pop("required", None)
    if still_required:
        schema["required"] = still_required
    return schema


def preset_template(preset: SitePreset, base_text: str) -> str:
    """Return the base template with the preset's defaults set after the marker line."""
    header = (
        f"{{#- {preset.title}: the {preset.base!r} template with this site's documented defaults.\n"
        f"    Generated by `python -m bundle.sites` from endpoint_configs/{preset.base}; edit those instead. -#}}\n"
    )
    return template_with_defaults(base_text, preset.defaults, preset.internal, header)


def preset_schema(preset: SitePreset, base_schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """Return the base schema with the preset's defaults, required options and title."""
    schema = schema_with_defaults(base_schema, preset.defaults, preset.required)
    schema["$id"] = schema["$id"].replace(f"/{preset.base}/", f"/{preset.name}/")
    schema["title"] = f"libe-gc {preset.name} endpoint options"
    schema["description"] = f"{preset.title}: the {preset.base} template with this site's documented defaults."
    return schema


def _cell(value: t.Any) -> str:
    return "not set" if value is None else f"`{json.dumps(value)}`"


def readme(
    name: str, title: str, intro: str, schema: dict[str, t.Any], examples: list[str], sources: t.Sequence[str] = ()
) -> str:
    """README of a generated template folder: intro, how to use it, every option with default and example."""
    required = set(schema.get("required", []))
    rows = []
    for key, prop in schema["properties"].items():
        default = "**required**" if key in required else _cell(prop.get("default"))
        example = _cell(prop["examples"][0]) if prop.get("examples") else ""
        rows.append(f"| `{key}` | {default} | {example} | {prop.get('description', '')} |")
    parts = [
        f"# `{name}` endpoint template: {title}",
        "",
        "<!-- Generated by `python -m bundle.sites`; edit bundle/sites.py or the schema instead. -->",
        "",
        intro,
        "",
        "## Use it",
        "",
        "On the machine's login node, as a template-capable endpoint:",
        "",
        "```",
        f"libe-gc endpoint configure my-ep --template {name}",
        "globus-compute-endpoint start my-ep",
        "```",
        "",
        "From the submit side, the options travel as `user_endpoint_config` and are checked against this "
        "template's schema before the first task leaves:",
        "",
        "```python",
        "from bundle import GCSession",
        "",
        f'ep = GCSession.get_executor("<endpoint UUID>", {{"nodes_per_block": 2}}, template="{name}")',
        "```",
        "",
        f"Render offline to see the engine configuration: `libe-gc endpoint render {name} -o options.json`.",
        "",
        "## Options",
        "",
        "Checked against `user_config_schema.json` before rendering; unknown options are refused, and "
        "strings that reach the batch script or `qsub`'s command line may only hold the characters their "
        "pattern allows.",
        "",
        "| option | default | example | meaning |",
        "|---|---|---|---|",
        *rows,
        "",
        "Examples: " + ", ".join(f"`examples/{e}`" for e in examples) + ".",
    ]
    if sources:
        parts += ["", "## Sources", "", *[f"- {s}" for s in sources]]
    return "\n".join(parts) + "\n"


def generated_files(root: pathlib.Path | None = None) -> dict[pathlib.Path, str]:
    """Every generated file, path -> text.

    Parameters
    ----------
    root : pathlib.Path, optional
        The ``endpoint_configs`` folder (the installed one by default).
    """
    root = root or endpoint_configs_dir()
    out: dict[pathlib.Path, str] = {}
    for base, intro in BASE_INTROS.items():
        schema = json.loads((root / base / SCHEMA_FILE).read_text())
        examples = sorted(p.name for p in (root / base / "examples").glob("*.json"))
        out[root / base / "README.md"] = readme(base, schema["description"].split(";")[0], intro, schema, examples)
    for preset in PRESETS:
        folder = root / preset.name
        base_schema = json.loads((root / preset.base / SCHEMA_FILE).read_text())
        schema = preset_schema(preset, base_schema)
        out[folder / CONFIG_FILE] = (
            (root / preset.base / CONFIG_FILE).read_text().replace(f'"{preset.base}"', f'"{preset.name}"')
        )
        out[folder / TEMPLATE_FILE] = preset_template(preset, (root / preset.base / TEMPLATE_FILE).read_text())
        out[folder / SCHEMA_FILE] = json.dumps(schema, indent=2) + "\n"
        for stem, example in preset.examples.items():
            out[folder / "examples" / f"{stem}.json"] = json.dumps(example, indent=2) + "\n"
        intro = (
            preset.summary + f"\n\nEvery option of the [`{preset.base}`](../{preset.base}/README.md) template applies."
        )
        examples = sorted(f"{stem}.json" for stem in preset.examples)
        out[folder / "README.md"] = readme(preset.name, preset.title, intro, schema, examples, preset.sources)
    return out


def stale(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Return the generated files that are missing or differ from what :func:`generated_files` gives."""
    return [p for p, text in generated_files(root).items() if not p.is_file() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    """Write the generated files, or with ``--check`` list the stale ones and return 1."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        old = stale()
        for path in old:
            print(f"out of date: {path}")
        return 1 if old else 0
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
