"""Bytes per sim as the engine receives them: GC-only mode against libEnsemble's own Globus Compute path.

    python -m benchmarks.bench_payload            # 200 sims per run
    python -m benchmarks.bench_payload --quick    # 20 sims per run

Both sides run the same trivial ensemble on the same started local endpoint (GlobusComputeEngine):
GC-only mode (packed calls, ``sim_specs`` bound into a runner registered once) and stock
libEnsemble with ``sim_specs["globus_compute_endpoint"]`` set (its ``GlobusComputeRunner``, see
``benchmarks/anchor.py``: ``(H rows, persis_info, sim_specs, libE_info)`` through the endpoint's
serializer with every sim).  Nothing is computed from sizes: every byte count is of what was sent.

* ``engine``: the length of the messagepack ``Task`` the engine received for each task (what a real
  endpoint receives from the Globus Compute service: the registered function's body and the
  task's arguments);
* ``request``: the bytes each task adds to the SDK's submit request, from the arguments each side
  really passed to ``submit_to_registered_function``, put through the installed SDK's own
  ``Batch.add`` + ``Batch.prepare()`` and JSON-encoded as the SDK posts it.

Two variants of the same sim: ``module`` (``sim_f`` importable from a module) and ``main``
(``sim_f`` defined in the calling script, which dill sends by value).  Ratio per variant and per
task and per measure (``request``, ``engine``): GC-only bytes / libEnsemble GC path bytes; goal <= 1
(GC-only sends no more).  GC-only's engine ``Task`` is the larger one: its registered runner travels by
value with ``sim_specs`` bound, and a real endpoint receives the function's body with every task.
"""

from __future__ import annotations

import builtins
import json
import os
import pathlib
import statistics
import sys
import types
import typing as t
import uuid

import click

from benchmarks import bench_gconly
from benchmarks.anchor import measure_anchor
from benchmarks.bench_gconly import endpoint_config, ensemble_specs, importable, trivial_sim
from benchmarks.common import benchmark_command, entry_point, machine, output_option, quick_option, summary
from benchmarks.common import ratios as ratio_list

VARIANTS = ("module", "main")


def _by_value(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """Return a copy of ``fn`` that looks defined in the calling script (``__main__``): dill sends its code."""
    import numpy

    copy = types.FunctionType(fn.__code__, {"__builtins__": builtins, "np": numpy}, fn.__name__)
    copy.__module__ = "__main__"
    copy.__qualname__ = fn.__qualname__
    copy.__doc__ = fn.__doc__
    return copy


class Recorder:
    """Record what GC-only mode submits to a local endpoint and what its engine receives."""

    def __init__(self, endpoint: t.Any) -> None:
        self.endpoint = endpoint
        self.calls: list[tuple[str, tuple[t.Any, ...], dict[str, t.Any]]] = []
        self.packed: list[int] = []
        submit = endpoint.submit_to_registered_function

        def recorded(function_id: str, args: t.Any = None, kwargs: t.Any = None) -> t.Any:
            self.calls.append((function_id, tuple(args or ()), dict(kwargs or {})))
            return submit(function_id, args=args, kwargs=kwargs)

        endpoint.submit_to_registered_function = recorded
        for host in endpoint._hosts.values():
            self._watch(host)

    def _watch(self, host: t.Any) -> None:
        submit = host.submit

        def recorded(task_id: t.Any, function_id: str, packed: bytes, spec: t.Any) -> t.Any:
            self.packed.append(len(packed))
            return submit(task_id, function_id, packed, spec)

        host.submit = recorded

    def reset(self) -> None:
        """Forget what was recorded."""
        self.calls.clear()
        self.packed.clear()


def _json_len(data: object) -> int:
    return len(json.dumps(data).encode())


def request_bytes(calls: list[tuple[str, tuple[t.Any, ...], dict[str, t.Any]]], serializer: t.Any) -> list[int]:
    """Return the bytes each recorded call adds to the SDK's submit request (``Batch.add`` + ``prepare()``)."""
    from globus_compute_sdk.sdk.batch import Batch, create_user_runtime

    group = uuid.uuid4()
    runtime = create_user_runtime()
    sizes = []
    for fid, args, kwargs in calls:
        b = Batch(group, None, None, True, serializer=serializer, user_runtime=runtime)
        b.add(fid, args, kwargs)
        sizes.append(_json_len(next(iter(b.prepare()["tasks"].values()))[0]))  # type: ignore[union-attr]
    return sizes


def run_side(side: str, sims: int, nworkers: int, sim_f: t.Callable[..., t.Any], endpoint: t.Any) -> None:
    """Run the trivial ensemble with ``sim_f`` through GC-only mode (``side="gconly"``) or libEnsemble's GC path."""
    from bundle.gconly import GCOnlySpecs

    specs = ensemble_specs(nworkers, sims, "local" if side == "gconly" else "")
    specs["sim_specs"]["sim_f"] = sim_f
    if side == "gconly":
        gc_specs = GCOnlySpecs(user_endpoint_config=endpoint_config(2))
        bench_gconly.run_ensemble(specs, nworkers, gc_specs, "bench-payload-")
    else:
        measure_anchor(endpoint, specs, nworkers)


@benchmark_command(__doc__)
@quick_option(help="20 sims per run")
@click.option("--sims", type=int, default=None, help="sims per run (default 200, quick 20)")
@click.option("--nworkers", type=int, default=4, help="workers on both sides (default 4)")
@output_option("payload.json")
def cli(quick: bool, sims: int | None, nworkers: int, output: str) -> int:
    """Run the payload benchmark and write the JSON file; return the exit code."""
    sims = sims or (20 if quick else 200)

    from bundle.endpoints.session import GCSession

    endpoint = GCSession.get_executor("local", endpoint_config(2))
    endpoint.start()
    if not endpoint.wait_ready(120):
        raise RuntimeError("local endpoint did not become ready")
    recorder = Recorder(endpoint)
    sim_fs = {"module": importable("trivial_sim"), "main": _by_value(trivial_sim)}
    found: dict[str, dict[str, t.Any]] = {}
    try:
        for name, sim_f in sim_fs.items():
            for side in ("gconly", "libe_gc"):
                recorder.reset()
                run_side(side, sims, nworkers, sim_f, endpoint)
                if len(recorder.packed) != sims:
                    raise RuntimeError(f"{side}: the engine received {len(recorder.packed)} tasks for {sims} sims")
                found[f"{name}/{side}"] = {
                    "engine_bytes": list(recorder.packed),
                    "request_bytes": request_bytes(recorder.calls, endpoint.serializer),
                }
            g, a = found[f"{name}/gconly"], found[f"{name}/libe_gc"]
            print(
                f"payload ({name} sim_f): engine Task GC-only {statistics.median(g['engine_bytes']):.0f} B, "
                f"libEnsemble GC path {statistics.median(a['engine_bytes']):.0f} B; SDK request per task "
                f"{statistics.median(g['request_bytes']):.0f} B vs {statistics.median(a['request_bytes']):.0f} B",
                flush=True,
            )
    finally:
        GCSession.clear()

    ratios = {}
    for name in sim_fs:
        g, a = found[f"{name}/gconly"], found[f"{name}/libe_gc"]
        where = "importable" if name == "module" else "in __main__"
        for kind, what in (("request", "added to the SDK's submit request"), ("engine", "as the engine receives them")):
            # per task: the i-th task on each side (both sides run the same sims)
            values = ratio_list(g[f"{kind}_bytes"], a[f"{kind}_bytes"])
            ratios[f"payload_{kind}_gconly_over_libe_gc_{name}"] = {
                **summary(values),
                "goal": "<= 1",
                "met": statistics.median(values) <= 1.0,
                "what": f"bytes per task {what}, sim_f {where}: GC-only / libEnsemble's own Globus Compute path",
                "raw": {
                    f"gconly_{kind}_bytes": statistics.median(g[f"{kind}_bytes"]),
                    f"libe_gc_{kind}_bytes": statistics.median(a[f"{kind}_bytes"]),
                },
            }
    result = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_payload", *sys.argv[1:]]),
        "machine": machine(),
        "config": {"sims": sims, "nworkers": nworkers, "quick": quick},
        "measured": {k: {m: summary(v) for m, v in d.items()} for k, d in found.items()},
        "ratios": ratios,
    }
    pathlib.Path(output).write_text(json.dumps(result, indent=2) + "\n")
    for name, ratio in ratios.items():
        print(f"{name}: median {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    print(f"wrote {output}")
    return 0


main = entry_point(cli, "python -m benchmarks.bench_payload")


if __name__ == "__main__":
    sys.exit(main())
