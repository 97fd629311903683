"""Script functions travel with the globals they read; what would be undefined remotely is named first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

from bundle.wire.shipping import global_names, remote_name_problems, ship

# A calling script: module-level import, constant, another function, decorator; it writes the SDK serializer's
# payloads of sim (as is) and of ship(sim) to the files named on its command line.
SCRIPT = textwrap.dedent(
    """
    import functools
    import sys

    import numpy as np
    from globus_compute_sdk.serialize import ComputeSerializer

    from bundle.wire.shipping import ship

    SCALE = 2.0

    def norm2(x):
        return SCALE * np.sum(x ** 2)

    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            return fn(*args)
        return wrapper

    @logged
    def sim(x):
        return norm2(np.asarray(x)) + len([v for v in x if v > OFFSET])

    OFFSET = 0.5
    ser = ComputeSerializer()
    for path, fn in zip(sys.argv[1:], (sim, ship(sim))):
        with open(path, "w") as fh:
            fh.write(ser.serialize(fn))
    """
)

# The endpoint's side: a fresh interpreter whose __main__ has none of the script's globals.
REMOTE = textwrap.dedent(
    """
    import sys
    from globus_compute_sdk.serialize import ComputeSerializer

    fn = ComputeSerializer().deserialize(open(sys.argv[1]).read())
    try:
        print("result", fn([1.0, 2.0]))
    except NameError as err:
        print("NameError", err)
    """
)


def test_a_script_function_runs_in_a_fresh_interpreter_only_when_shipped(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(SCRIPT)
    plain, shipped = tmp_path / "plain.txt", tmp_path / "shipped.txt"
    subprocess.run([sys.executable, str(script), str(plain), str(shipped)], check=True, timeout=120, cwd=tmp_path)
    (tmp_path / "remote.py").write_text(REMOTE)

    def remote(payload):
        return subprocess.run(
            [sys.executable, str(tmp_path / "remote.py"), str(payload)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=True,
        ).stdout

    # dill's default: code by value, globals by reference to the endpoint's __main__
    assert remote(plain).startswith("NameError"), remote(plain)
    # shipped: np by reference (imported there), SCALE, OFFSET, norm2 and the decorated function by value
    assert remote(shipped).strip() == f"result {2.0 * (1 + 4) + 2}"


def _main_function(source: str, name: str, **globals_: object) -> types.FunctionType:
    """A function whose module is __main__, as the calling script's are."""
    namespace: dict[str, object] = {"__name__": "__main__", **globals_}
    exec(textwrap.dedent(source), namespace)
    fn = namespace[name]
    assert isinstance(fn, types.FunctionType)
    return fn


def test_ship_keeps_only_the_names_the_code_reads():
    fn = _main_function(
        """
        def sim(H):
            out = np.zeros(3)
            return out + SCALE + len([h for h in H if h > LIMIT])
        """,
        "sim",
        np=__import__("numpy"),
        SCALE=2.0,
        LIMIT=1,
        UNUSED=object(),
    )
    assert global_names(fn) == ["np", "SCALE", "len", "LIMIT"]  # 'zeros' is an attribute, not a global
    copy = ship(fn)
    assert copy is not fn and copy.__module__ == "__main__" and copy.__qualname__ == "sim"
    assert set(copy.__globals__) == {"__builtins__", "__name__", "np", "SCALE", "LIMIT"}
    assert copy([0, 2]).tolist() == [3.0, 3.0, 3.0]
    assert ship(len) is len and ship(global_names) is global_names  # importable: by reference


def test_undefined_names_are_named_before_anything_is_sent():
    fn = _main_function("def sim(x):\n    return np.sum(x) * SCALE\n", "sim", np=__import__("numpy"))
    (problem,) = remote_name_problems(ship(fn))
    assert "'SCALE'" in problem and "not defined" in problem and "module level" in problem
    assert remote_name_problems(ship(_main_function("def ok(x):\n    return abs(x)\n", "ok"))) == []


def test_source_only_code_strategies_need_imports_inside_the_function():
    fn = _main_function("def sim(x):\n    return np.sum(x)\n", "sim", np=__import__("numpy"))
    (problem,) = remote_name_problems(ship(fn), "PureSourceTextInspect")
    assert "'np'" in problem and "import or define it inside the function" in problem
    assert remote_name_problems(ship(fn), "DillCode") == []


def test_called_functions_classes_and_unimportable_modules_are_checked():
    loose = types.ModuleType("loose_module_nowhere")  # built at run time: no spec, not importable by name
    norm2 = _main_function("def norm2(x):\n    return x + MISSING\n", "norm2")
    cls = _main_function(
        "def make():\n    class Model:\n        def run(self):\n            return np.ones(1)\n    return Model\n",
        "make",
    )()
    fn = _main_function(
        "def sim(x):\n    return norm2(x), Model().run(), loose.f(x)\n", "sim", norm2=norm2, Model=cls, loose=loose
    )
    cls.__module__ = "__main__"
    problems = remote_name_problems(ship(fn))
    assert any("'MISSING'" in p and "norm2 (called by sim)" in p for p in problems), problems
    assert any("class" in p and "['np']" in p and "move the class to a module" in p for p in problems), problems
    assert any("loose_module_nowhere" in p and "cannot import" in p for p in problems), problems


def test_a_run_reuses_the_earlier_copy_while_the_globals_are_the_same():
    """So an endpoint registers a script's sim_f once, not once per run; a changed constant is a new copy."""
    from globus_compute_sdk.serialize import ComputeSerializer

    from bundle.gconly.serialization import ship_checked

    ser = ComputeSerializer()
    fn = _main_function("def sim(x):\n    return x * SCALE\n", "sim", SCALE=2.0)
    first = ship_checked(ser, "sim_f", fn)
    assert first is not fn and ship_checked(ser, "sim_f", fn) is first
    fn.__globals__["SCALE"] = 3.0
    changed = ship_checked(ser, "sim_f", fn)
    assert changed is not first and changed(1) == 3.0 and first(1) == 2.0
    assert ship_checked(ser, "sim_f", len) is len
