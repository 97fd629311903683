"""Script functions travel with the globals they read; what would be undefined remotely is named first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

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


# A calling script whose functions reach others of the script through a list, a dict of tuples, a partial, a
# nested recursive function, a task argument and a default; it writes ship()'s payload (or the refusal) of each.
CASES = textwrap.dedent(
    """
    import functools
    import json
    import sys

    import numpy as np
    from globus_compute_sdk.serialize import ComputeSerializer

    from bundle.wire.shipping import ship

    SCALE = 2.0

    def helper(x):
        return SCALE * np.sum(np.asarray(x))

    OPS = [helper]
    TABLE = {"h": (helper,)}

    def via_list(x):
        return OPS[0](x)

    def via_dict(x):
        return TABLE["h"][0](x)

    def via_default(x, fn=helper):
        return fn(x)

    def calls(fn, x):
        return fn(x)

    def make():
        def fact(n):
            return 1 if n < 2 else n * fact(n - 1)
        return fact

    cases = {
        "list": via_list,
        "dict": via_dict,
        "default": via_default,
        "partial": functools.partial(calls, helper),
        "nested recursion": make(),
    }
    ser, out = ComputeSerializer(), {}
    for name, fn in cases.items():
        try:
            out[name] = ser.serialize(ship(fn))
        except Exception as err:
            out[name] = f"refused {type(err).__name__}"
    json.dump(out, open(sys.argv[1], "w"))
    """
)

RUN_CASES = textwrap.dedent(
    """
    import json
    import sys
    from globus_compute_sdk.serialize import ComputeSerializer

    ser = ComputeSerializer()
    for name, payload in json.load(open(sys.argv[1])).items():
        if payload.startswith("refused"):
            print(name, payload)
            continue
        try:
            print(name, ser.deserialize(payload)(3))
        except Exception as err:
            print(name, type(err).__name__, err)
    """
)


def test_functions_reached_through_containers_partials_defaults_and_nested_recursion_travel(tmp_path):
    """Each case runs in a fresh interpreter (the endpoint's side): no NameError there, no RecursionError here."""
    (tmp_path / "driver.py").write_text(CASES)
    (tmp_path / "remote.py").write_text(RUN_CASES)
    payloads = tmp_path / "payloads.json"
    subprocess.run([sys.executable, "driver.py", str(payloads)], check=True, timeout=120, cwd=tmp_path)
    out = subprocess.run(
        [sys.executable, "remote.py", str(payloads)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    got = {}
    for line in out.stdout.splitlines():
        for name in ("list", "dict", "default", "partial", "nested recursion"):
            if line.startswith(name + " "):
                got[name] = line[len(name) + 1 :]
    assert got == {"list": "6.0", "dict": "6.0", "default": "6.0", "partial": "6.0", "nested recursion": "6"}, got


def test_an_empty_closure_cell_and_unlooked_containers_are_refused_naming_the_way_out():
    import collections

    from bundle.wire.shipping import ShippingError

    maker = _main_function(
        "def outer():\n    def f(x):\n        return g(x)\n    return f\n    g = abs\n",
        "outer",
    )
    with pytest.raises(ShippingError, match=r"reads 'g' from its enclosing function, where it has no value yet"):
        ship(maker())
    helper = _main_function("def helper(x):\n    return x\n", "helper")
    odd = _main_function("def sim(x):\n    return ODD['h'](x)\n", "sim", ODD=collections.OrderedDict(h=helper))
    with pytest.raises(ShippingError, match=r"OrderedDict that contains a function of the calling script"):
        ship(odd)
    # a list that holds itself and a function: the copy keeps the cycle
    loop: list[object] = []
    loop += [loop, helper]
    copy = ship(_main_function("def sim(x):\n    return LOOP[1](x)\n", "sim", LOOP=loop))
    shipped = copy.__globals__["LOOP"]
    assert shipped is not loop and shipped[0] is shipped and shipped[1] is not helper and copy(5) == 5
    # data that reaches no function of the script is not copied
    data = {"a": [1, 2, 3]}
    assert ship(_main_function("def sim(x):\n    return DATA\n", "sim", DATA=data)).__globals__["DATA"] is data


def test_names_missing_behind_a_partial_or_a_list_are_named_before_sending():
    helper = _main_function("def helper(x):\n    return x * MISSING\n", "helper")
    import functools

    (problem,) = remote_name_problems(ship(functools.partial(helper, 2)))
    assert "'MISSING'" in problem and "helper" in problem
    sim = _main_function("def sim(x):\n    return OPS[0](x)\n", "sim", OPS=[helper])
    (problem,) = remote_name_problems(ship(sim))
    assert "'MISSING'" in problem and "in the global 'OPS' of sim" in problem
