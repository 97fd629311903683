"""Send functions of the calling script to an endpoint with the globals they use.

A function defined in the calling script (module ``__main__``) is pickled by dill *by value*,
but with its globals *by reference* to ``__main__``: on the endpoint, ``__main__`` is the
worker's, so a module-level ``import numpy as np`` or constant is missing there
(``NameError: name 'np' is not defined``).  :func:`ship` returns a copy of such a function whose
globals are exactly the names its code reads, so dill sends them along:

* by value: the function's code, defaults and closure; constants and data it reads
  (numbers, strings, arrays, dicts, ...); other functions of the calling script it reaches
  (each shipped the same way, once, so recursion is kept): by name, in its closure or
  defaults, or inside plain lists, tuples, dicts, sets and ``functools.partial`` objects;
  classes of the calling script it reads (dill sends them by value, but their methods still
  see the endpoint's ``__main__``, so a method must not read module globals: the check below
  refuses that);
* by reference (the endpoint imports them, so its Python must have them installed): modules
  (``np``, ``math``), and functions and classes defined in importable modules
  (``from scipy.optimize import rosen``).

The copy's globals hold the script's objects themselves; they are copied when the copy is
serialized, which the callers do at once: GC-only mode registers ``sim_f`` when the run starts,
and the executor serializes a Python task's function and arguments inside ``submit``.  Later
changes in the calling script do not reach the endpoint.  Functions defined in importable
modules are left as they are (they travel by reference).  What cannot travel as it is (a
closure variable without a value yet, a function of the script inside another container type)
raises :class:`ShippingError` before anything is sent.

:func:`remote_name_problems` lists, before anything is submitted, the names a function reads
that would be undefined on the endpoint.
"""

from __future__ import annotations

import builtins
import dis
import functools
import importlib.util
import sys
import types
import typing as t

from bundle.errors import BundleError
from bundle.wire.byvalue import main_copy

_T = t.TypeVar("_T")

SOURCE_STRATEGIES = frozenset({"DillCodeSource", "DillCodeTextInspect", "PureSourceTextInspect", "PureSourceDill"})
"""Code strategies of the Globus Compute SDK that send a function's source text only (no globals)."""


def _codes(code: types.CodeType) -> t.Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def global_names(fn: types.FunctionType) -> list[str]:
    """Return the global names ``fn``'s code reads (nested functions, lambdas and comprehensions included).

    Parameters
    ----------
    fn : function
        A Python function.

    Returns
    -------
    list of str
        In order of first use; attribute names (``np.zeros`` -> ``zeros``) are not included.
    """
    names: dict[str, None] = {}
    for code in _codes(fn.__code__):
        instructions = list(dis.get_instructions(code))
        stored = {ins.argval for ins in instructions if ins.opname == "STORE_NAME"}  # a class body's own names
        for ins in instructions:
            if not isinstance(ins.argval, str):
                continue
            if ins.opname == "LOAD_GLOBAL" or (ins.opname == "LOAD_NAME" and ins.argval not in stored):
                names.setdefault(ins.argval, None)
    return list(names)


def _from_main(obj: object) -> bool:
    return getattr(obj, "__module__", None) == "__main__"


class ShippingError(BundleError, TypeError):
    """A function of the calling script that cannot travel to the endpoint as it is.

    Raised by :func:`ship` before anything is submitted; the executor and GC-only mode turn it
    into their own submit-time error (:class:`~bundle.errors.TaskSerializationError`,
    ``SimSerializationError``).
    """


CONTAINERS: tuple[type, ...] = (list, tuple, dict, set, frozenset)
"""Containers :func:`ship` looks into (exactly these types) for functions of the calling script."""


def _is_main_function(value: object) -> bool:
    return isinstance(value, types.FunctionType) and _from_main(value)


def _reaches_main(value: object, seen: set[int]) -> bool:
    """Whether a function of ``__main__`` is reachable from ``value`` through partials and containers."""
    stack = [value]
    while stack:
        item = stack.pop()
        if _is_main_function(item):
            return True
        if id(item) in seen:
            continue
        if isinstance(item, functools.partial):
            seen.add(id(item))
            stack += [item.func, *item.args, *(item.keywords or {}).values()]
        elif isinstance(item, dict):
            seen.add(id(item))
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            seen.add(id(item))
            stack += list(item)
    return False


class _Shipper:
    """One :func:`ship` call: a memo of what was copied (so cycles and shared objects stay shared)."""

    def __init__(self, memo: dict[int, t.Any]) -> None:
        self.memo = memo
        self.building: set[int] = set()
        self.plain: set[int] = set()  # checked: reaches no function of __main__, travels as it is

    def value(self, value: t.Any, where: str) -> t.Any:
        """Return ``value`` ready to travel: functions of ``__main__`` in it shipped, anything else kept."""
        key = id(value)
        if key in self.memo:
            return self.memo[key]
        if _is_main_function(value):
            return self.function(value)
        if not isinstance(value, (functools.partial, *CONTAINERS)) or key in self.plain:
            return value
        if not _reaches_main(value, set()):
            self.plain.add(key)
            return value
        if key in self.building:
            raise ShippingError(
                f"{where} holds a {type(value).__name__} that contains itself and a function of the calling "
                "script: make the function reachable by name (a module-level global) instead"
            )
        if type(value) not in (functools.partial, *CONTAINERS):
            raise ShippingError(
                f"{where} holds a {type(value).__qualname__} that contains a function of the calling script; only "
                "plain lists, tuples, dicts, sets and functools.partial are looked into: use one of those, or move "
                "the function to a module the endpoint can import"
            )
        self.building.add(key)
        try:
            return self._container(value, where)
        finally:
            self.building.discard(key)

    def _container(self, value: t.Any, where: str) -> t.Any:
        key = id(value)
        if isinstance(value, list):
            out: t.Any = []
            self.memo[key] = out
            out.extend(self.value(v, where) for v in value)
        elif isinstance(value, dict):
            out = {}
            self.memo[key] = out
            for k, v in value.items():
                out[self.value(k, where)] = self.value(v, where)
        elif isinstance(value, functools.partial):
            func = self.value(value.func, where)
            args = [self.value(v, where) for v in value.args]
            keywords = {k: self.value(v, where) for k, v in (value.keywords or {}).items()}
            out = functools.partial(func, *args, **keywords)
            out.__dict__.update(value.__dict__)
        else:  # tuple, set, frozenset: immutable (or hashable members): built from their shipped members
            out = type(value)(self.value(v, where) for v in value)
        self.memo[key] = out
        return out

    def function(self, fn: types.FunctionType) -> types.FunctionType:
        """Return the copy of a function of ``__main__`` with the globals it reads (shipped likewise)."""
        glb: dict[str, t.Any] = {"__builtins__": builtins, "__name__": "__main__"}
        cells = None if fn.__closure__ is None else tuple(types.CellType() for _ in fn.__closure__)
        copy = main_copy(fn, glb, closure=cells)
        self.memo[id(fn)] = copy  # before its closure and globals: a function that reaches itself gets this copy
        label = fn.__qualname__
        if cells is not None:
            assert fn.__closure__ is not None
            for name, cell, new in zip(fn.__code__.co_freevars, fn.__closure__, cells, strict=True):
                try:
                    value = cell.cell_contents
                except ValueError:
                    raise ShippingError(
                        f"{label} reads {name!r} from its enclosing function, where it has no value yet when the "
                        f"function is sent: assign {name!r} before {label} is submitted or registered"
                    ) from None
                new.cell_contents = self.value(value, f"{label} (its variable {name!r})")
        if fn.__defaults__:
            copy.__defaults__ = tuple(self.value(v, f"{label} (a default)") for v in fn.__defaults__)
        if fn.__kwdefaults__:
            copy.__kwdefaults__ = {k: self.value(v, f"{label} (a default)") for k, v in fn.__kwdefaults__.items()}
        copy.__dict__.update({k: self.value(v, f"{label}.{k}") for k, v in fn.__dict__.items()})
        source = fn.__globals__
        for name in global_names(fn):
            if name in source:
                glb[name] = self.value(source[name], f"{label} (the global {name!r})")
        return copy


def ship(fn: _T, _memo: dict[int, t.Any] | None = None) -> _T:
    """Return ``fn`` ready to travel to an endpoint with the globals it reads.

    Parameters
    ----------
    fn : callable
        A function (``sim_f``, a Python task's function), a ``functools.partial`` of one, or a
        plain container of such.  Only functions of ``__main__`` are copied (and what holds them
        rebuilt); anything else is returned unchanged.

    Returns
    -------
    callable
        For a function of ``__main__``: a copy with the same code, name and module, whose globals
        hold only the builtins and the names its code reads.  Functions of ``__main__`` it reaches
        (in those globals, its closure, its defaults, and inside plain lists, tuples, dicts, sets
        and ``functools.partial`` objects there) are shipped likewise, once each, so recursion
        and cycles are kept.  A partial gets a shipped function and arguments.  Otherwise ``fn``
        itself.

    Raises
    ------
    ShippingError
        When a function cannot travel as it is: a closure variable without a value yet, a
        function of the script inside another container type, a cycle through a tuple, nesting
        too deep to copy.
    """
    shipper = _Shipper({} if _memo is None else _memo)
    label = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        return t.cast(_T, shipper.value(fn, label))
    except RecursionError:
        raise ShippingError(
            f"{label} reaches objects nested too deeply to copy for the endpoint: make the deep data a module "
            "the endpoint imports, or pass it as an argument"
        ) from None


def remote_name_problems(fn: object, code_strategy: str = "DillCode") -> list[str]:
    """Return what would be undefined when ``fn`` runs on the endpoint, one sentence each.

    Checked: global names ``fn`` reads that are neither defined (in its globals, at the time of
    the check) nor builtins; with a source-text code strategy (``DillCodeSource``,
    ``PureSourceTextInspect``, ...), every non-builtin global, since only the source travels;
    modules it reads that cannot be imported by name (loaded from a file path, or ``__main__``).
    Functions of ``__main__`` it reaches are checked too: through its globals, closure and
    defaults, and inside the lists, tuples, dicts, sets and ``functools.partial`` objects there.

    Parameters
    ----------
    fn : object
        The function as it will be sent (after :func:`ship`), or any callable.
    code_strategy : str
        Class name of the endpoint serializer's code strategy.

    Returns
    -------
    list of str
        Empty when nothing is missing.
    """
    problems: list[str] = []
    seen: set[int] = set()
    top = next(_main_functions_in(fn), None)

    def visit(f: types.FunctionType, label: str) -> None:
        if id(f) in seen:
            return
        seen.add(id(f))
        reached = [*_cell_values(f), *(f.__defaults__ or ()), *(f.__kwdefaults__ or {}).values()]
        for inner in _main_functions_in(reached):
            visit(inner, f"{inner.__qualname__} (reached by {label})")
        glb = f.__globals__
        for name in global_names(f):
            if name in glb:
                value = glb[name]
                if code_strategy in SOURCE_STRATEGIES and f is top:
                    problems.append(
                        f"{label} reads the global {name!r}, but the code strategy {code_strategy} sends only "
                        "the function's source: import or define it inside the function"
                    )
                elif isinstance(value, types.ModuleType) and not _importable(value):
                    problems.append(
                        f"{label} reads the module {name!r} ({value.__name__}), which the endpoint cannot import by "
                        "name: make it an installed package or a module on the endpoint's PYTHONPATH"
                    )
                elif _is_main_function(value):
                    visit(value, f"{value.__qualname__} (called by {label})")
                elif isinstance(value, (functools.partial, *CONTAINERS)):
                    for inner in _main_functions_in(value):
                        visit(inner, f"{inner.__qualname__} (in the global {name!r} of {label})")
                elif isinstance(value, type) and _from_main(value):
                    used = sorted(_class_globals(value))
                    if used:
                        problems.append(
                            f"{label} uses the class {value.__qualname__} of the calling script, whose methods read "
                            f"the globals {used}, which are not sent with a class: move the class to a module the "
                            "endpoint can import, or import inside its methods"
                        )
            elif not hasattr(builtins, name):
                problems.append(
                    f"{label} reads the global {name!r}, which is not defined in the calling script when the "
                    "function is sent: define or import it at module level before the run starts"
                )

    for f in _main_functions_in(fn):
        visit(f, f.__qualname__ if f is fn else f"{f.__qualname__} (in {type(fn).__name__} {fn!r:.60})")
    if isinstance(fn, types.FunctionType) and not _from_main(fn):
        visit(fn, getattr(fn, "__qualname__", "the function"))
    return problems


def _cell_values(fn: types.FunctionType) -> list[t.Any]:
    values = []
    for cell in fn.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # empty: ship() refuses it
            continue
    return values


def _main_functions_in(value: object) -> t.Iterator[types.FunctionType]:
    """Yield the functions of ``__main__`` reachable from ``value`` through partials and containers."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if _is_main_function(item):
            yield t.cast(types.FunctionType, item)
        elif isinstance(item, functools.partial):
            stack += [*reversed(item.keywords.values()), *reversed(item.args), item.func]
        elif isinstance(item, dict):
            stack += [*reversed(item.values()), *reversed(item.keys())]
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack += list(reversed(list(item)))


def _class_globals(cls: type) -> set[str]:
    """Non-builtin global names the methods of ``cls`` read."""
    names: set[str] = set()
    for attr in vars(cls).values():
        func = getattr(attr, "__func__", attr)  # staticmethod / classmethod
        if isinstance(func, types.FunctionType):
            names.update(n for n in global_names(func) if not hasattr(builtins, n))
    return names


def _importable(module: types.ModuleType) -> bool:
    name = module.__name__
    if name == "__main__":
        return False
    if name in sys.builtin_module_names:
        return True
    spec = getattr(module, "__spec__", None)
    if spec is None:
        return False
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return found is not None


def ship_task_function(
    fn: t.Callable[..., t.Any],
    app_name: str,
    code_strategy: str = "DillCode",
    args: tuple[t.Any, ...] = (),
    kwargs: dict[str, t.Any] | None = None,
) -> tuple[t.Callable[..., t.Any], tuple[t.Any, ...], dict[str, t.Any]]:
    """Return a Python task's function and arguments shipped with their globals, or refuse them before submission.

    Parameters
    ----------
    fn : callable
        The function of a Python app (``register_app(pyobj=...)``) or of ``submit(func=...)``.
    app_name : str
        The app's name, for the message.
    code_strategy : str
        Class name of the endpoint serializer's code strategy.
    args, kwargs
        The task's arguments: functions of the calling script among them (also inside lists,
        tuples, dicts, sets and partials) are shipped as ``fn`` is.

    Returns
    -------
    tuple
        ``(fn, args, kwargs)`` shipped.

    Raises
    ------
    bundle.errors.TaskSerializationError
        Naming every global that would be undefined on the endpoint, or what cannot be shipped.
    """
    from bundle.errors import TaskSerializationError

    prefix = f"the function of Python app {app_name!r} would fail on the endpoint (nothing was submitted): "
    memo: dict[int, t.Any] = {}
    try:
        shipped = ship(fn, memo)
        call = ship((tuple(args), dict(kwargs or {})), memo)  # a tuple: its members shipped
    except ShippingError as err:
        raise TaskSerializationError(prefix + str(err) + ".", what="the function") from None
    problems = remote_name_problems(shipped, code_strategy) + remote_name_problems(call)
    if problems:
        raise TaskSerializationError(prefix + "; ".join(dict.fromkeys(problems)) + ".", what="the function")
    return shipped, call[0], call[1]
