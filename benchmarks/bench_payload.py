"""GC-only mode payload: bytes sent per task with the function registered once versus shipped with every task.

    python -m benchmarks.bench_payload            # 200 sims per variant
    python -m benchmarks.bench_payload --quick    # 20 sims per variant

GC-only mode registers ``sim_f`` once per endpoint and then submits only arguments.  This
benchmark runs a real GC-only ensemble of trivial sims on a local endpoint
(GlobusComputeEngine) and records, for every task, what GC-only mode passed to
``submit_to_registered_function`` and the messagepack ``Task`` the engine received.  From
those real arguments it measures, with the installed Globus Compute SDK's own code:

* ``registered``: the bytes a task adds to the SDK's submit request (``Batch.add(function_id,
  args, kwargs)`` then ``Batch.prepare()``, JSON-encoded as the SDK posts it): arguments only;
* ``shipped``: the bytes of the same task when the function travels with it: the SDK's
  function registration request (``FunctionRegistrationData(function=sim_f).to_dict()``) plus
  the task's entry;
* ``local_task``: the packed ``Task`` the local endpoint's engine received.  It holds the
  function body too, because a real endpoint receives each task that way from the Globus
  Compute service (the service adds the registered function); it is reported, not compared.

Two variants of the same trivial sim: ``module`` (``sim_f`` importable from a module, so its
code serializer sends a reference) and ``main`` (``sim_f`` defined in the calling script, so it
is serialized by value).  ``sim_specs`` is one of ``sim_f``'s arguments and holds ``sim_f``
itself, so the bytes of ``sim_f`` inside the arguments are reported too.

Ratio per variant: ``registered / shipped`` (smaller is better).  Goal "args only": a task's
entry is exactly its serialized arguments (checked byte for byte) and carries no copy of
``sim_f``'s code: ``sim_f`` adds less than half of its by-value size to the arguments (a
reference by name, as in the ``module`` variant, is a few dozen bytes).
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import sys
import types
import typing as t
import uuid

import click

from benchmarks import bench_gconly
from benchmarks.bench_gconly import endpoint_config, ensemble_specs, importable, trivial_sim
from benchmarks.cli import run_command
from bundle.byvalue import by_value

VARIANTS = ("module", "main")


def _by_value(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """Return a copy of ``fn`` that looks defined in the calling script (``__main__``): dill sends its code."""
    import numpy

    return by_value(fn, np=numpy)


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


def run_ensemble(sims: int, nworkers: int, sim_f: t.Callable[..., t.Any], config: dict[str, t.Any]) -> None:
    """Run one GC-only ensemble of ``sims`` trivial sims with ``sim_f``."""
    from bundle.gconly import GCOnlySpecs

    specs = ensemble_specs(nworkers, sims)
    specs["sim_specs"]["sim_f"] = sim_f
    bench_gconly.run_ensemble(specs, nworkers, GCOnlySpecs(user_endpoint_config=config), "bench-payload-")


def _json_len(data: object) -> int:
    return len(json.dumps(data).encode())


def measure(
    calls: list[tuple[str, tuple[t.Any, ...], dict[str, t.Any]]],
    sim_f: t.Callable[..., t.Any],
    config: dict[str, t.Any],
    serializer: t.Any,
) -> dict[str, t.Any]:
    """Bytes per task of the recorded calls, registered (args only) and with the function shipped."""
    from globus_compute_sdk.sdk.batch import Batch, create_user_runtime
    from globus_compute_sdk.sdk.client import FunctionRegistrationData

    function_ids = {fid for fid, _, _ in calls}
    if len(function_ids) != 1:
        raise RuntimeError(f"GC-only mode used {len(function_ids)} function ids, expected one: {function_ids}")
    group = uuid.uuid4()
    runtime = create_user_runtime()

    def batch(tasks: list[tuple[str, tuple[t.Any, ...], dict[str, t.Any]]]) -> Batch:
        b = Batch(group, None, config, True, serializer=serializer, user_runtime=runtime)
        for fid, args, kwargs in tasks:
            b.add(fid, args, kwargs)
        return b

    entries = [batch([c]).prepare()["tasks"] for c in calls]
    entry_bytes = [_json_len(next(iter(e.values()))[0]) for e in entries]  # type: ignore[union-attr]
    args_only = [
        len(serializer.pack_buffers([serializer.serialize(args), serializer.serialize(kwargs)]))
        for _, args, kwargs in calls
    ]
    payloads = [next(iter(e.values()))[0] for e in entries]  # type: ignore[union-attr]
    exactly_args = all(
        p == serializer.pack_buffers([serializer.serialize(a), serializer.serialize(k)])
        for p, (_, a, k) in zip(payloads, calls, strict=True)
    )
    one_request = _json_len(batch(calls[:1]).prepare())
    all_request = _json_len(batch(calls).prepare())
    per_task_in_batch = (all_request - one_request) / max(1, len(calls) - 1)
    registration = _json_len(FunctionRegistrationData(function=sim_f, serializer=serializer).to_dict())
    shipped = [registration + e for e in entry_bytes]
    registered = entry_bytes
    sim_f_bytes = len(serializer.serialize(sim_f))
    code_bytes = len(serializer.serialize(_by_value(sim_f)))  # sim_f sent by value, with its code

    def without_sim_f(args: tuple[t.Any, ...]) -> tuple[t.Any, ...]:
        return tuple({**a, "sim_f": None} if isinstance(a, dict) and a.get("sim_f") is sim_f else a for a in args)

    # What sim_f itself adds to a task's arguments (sim_specs, one of sim_f's arguments, holds it).
    in_args = [
        n - len(serializer.pack_buffers([serializer.serialize(without_sim_f(a)), serializer.serialize(k)]))
        for n, (_, a, k) in zip(args_only, calls, strict=True)
    ]
    return {
        "tasks": len(calls),
        "registered_bytes_per_task": statistics.median(registered),
        "shipped_bytes_per_task": statistics.median(shipped),
        "args_only_bytes_per_task": statistics.median(args_only),
        "task_entry_is_exactly_args": exactly_args,
        "per_task_bytes_in_one_batch": per_task_in_batch,
        "one_task_request_bytes": one_request,
        "registration_request_bytes": registration,
        "sim_f_serialized_bytes": sim_f_bytes,
        "sim_f_bytes_inside_args": statistics.median(in_args),
        # "args only": no task carries the function's code (a reference by name is a few dozen bytes)
        "sim_f_code_bytes": code_bytes,
        "bytes_per_argument": {
            name: statistics.median(len(serializer.serialize(a[i])) for _, a, _ in calls if len(a) > i)
            for i, name in enumerate(("H rows", "persis_info", "sim_specs", "libE_info"))
            if len(calls[0][1]) > i
        },
        "args_only": exactly_args and statistics.median(in_args) < code_bytes / 2,
        "ratios": [r / s for r, s in zip(registered, shipped, strict=True)],
    }


@click.command(help=__doc__.split("\n")[0])
@click.option("--quick", is_flag=True, help="20 sims per variant")
@click.option("--sims", type=int, help="sims per variant (default 200, quick 20)")
@click.option("--nworkers", type=int, default=8, help="virtual workers (default 8)")
@click.option("--output", default="payload.json", help="JSON file to write")
def cli(**opts: t.Any) -> int:
    """Run the payload benchmark and write the JSON file."""
    args = types.SimpleNamespace(**opts)
    sims = args.sims or (20 if args.quick else 200)

    from bundle.session import GCSession

    config = endpoint_config(2)
    endpoint = GCSession.get_executor("local", config)
    endpoint.start()
    if not endpoint.wait_ready(120):
        raise RuntimeError("local endpoint did not become ready")
    recorder = Recorder(endpoint)
    sim_fs = {"module": importable("trivial_sim"), "main": _by_value(trivial_sim)}
    variants: dict[str, dict[str, t.Any]] = {}
    try:
        for name in VARIANTS:
            recorder.reset()
            run_ensemble(sims, args.nworkers, sim_fs[name], config)
            m = measure(recorder.calls, sim_fs[name], config, endpoint.serializer)
            m["local_task_bytes_per_task"] = statistics.median(recorder.packed)
            variants[name] = m
            print(
                f"payload ({name} sim_f): registered {m['registered_bytes_per_task']:.0f} B/task, shipped "
                f"{m['shipped_bytes_per_task']:.0f} B/task, local engine Task {m['local_task_bytes_per_task']:.0f} B",
                flush=True,
            )
    finally:
        GCSession.clear()

    ratios = {}
    for name, m in variants.items():
        values = m.pop("ratios")
        ratios[f"payload_registered_over_shipped_{name}"] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "n": len(values),
            "goal": "args only",
            "met": bool(m["args_only"]),
            "what": f"bytes per GC-only task, sim_f {'importable' if name == 'module' else 'in __main__'}: "
            "registered once / shipped with every task",
            "raw": {
                "registered_bytes_per_task": m["registered_bytes_per_task"],
                "shipped_bytes_per_task": m["shipped_bytes_per_task"],
                "sim_f_bytes_inside_args": m["sim_f_bytes_inside_args"],
                "local_engine_task_bytes": m["local_task_bytes_per_task"],
            },
        }
    result = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_payload", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "config": {"sims": sims, "nworkers": args.nworkers, "quick": args.quick},
        "variants": variants,
        "ratios": ratios,
    }
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for name, ratio in ratios.items():
        print(f"{name}: median {ratio['median']:.3f}, args only: {'yes' if ratio['met'] else 'no'}")
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the payload benchmark and write the JSON file."""
    return run_command(cli, argv, "python -m benchmarks.bench_payload")


if __name__ == "__main__":
    sys.exit(main())
