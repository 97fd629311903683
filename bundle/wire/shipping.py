"""Send functions of the calling script to an endpoint with the globals they use.

A function defined in the calling script (module ``__main__``) is pickled by dill *by value*,
but with its globals *by reference* to ``__main__``: on the endpoint, ``__main__`` is the
worker's, so a module-level ``import numpy as np`` or constant is missing there
(``NameError: name 'np' is not defined``).  :func:`ship` returns a copy of such a function whose
globals are exactly the names its code reads, so dill sends them along:

* by value: the function's code, defaults and closure; constants and data it reads
  (numbers, strings, arrays, dicts, ...); other functions of the calling script it reads (each
  shipped the same way, recursively); classes of the calling script it reads (dill sends them
  by value, but their methods still see the endpoint's ``__main__``, so a method must not read
  module globals: the check below refuses that);
* by reference (the endpoint imports them, so its Python must have them installed): modules
  (``np``, ``math``), and functions and classes defined in importable modules
  (``from scipy.optimize import rosen``).

A value is copied when the function is shipped (registered or submitted): later changes to a
global in the calling script do not reach the endpoint.  Functions defined in importable
modules are left as they are (they travel by reference).

:func:`remote_name_problems` lists, before anything is submitted, the names a function reads
that would be undefined on the endpoint.
"""

from __future__ import annotations

import builtins
import dis
import importlib.util
import sys
import types
import typing as t

from bundle.wire.byvalue import main_copy

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


def ship(fn: t.Callable[..., t.Any], _memo: dict[int, t.Any] | None = None) -> t.Callable[..., t.Any]:
    """Return ``fn`` ready to travel to an endpoint with the globals it reads.

    Parameters
    ----------
    fn : callable
        A function (``sim_f``, a Python task's function).  Only plain functions of ``__main__``
        are copied; anything else is returned unchanged.

    Returns
    -------
    callable
        For a function of ``__main__``: a copy with the same code, defaults, closure, name and
        module, whose globals hold only the builtins and the names its code reads (functions of
        ``__main__`` among them shipped likewise).  Otherwise ``fn`` itself.
    """
    if not isinstance(fn, types.FunctionType) or not _from_main(fn):
        return fn
    memo: dict[int, t.Any] = {} if _memo is None else _memo
    if id(fn) in memo:
        return t.cast(t.Callable[..., t.Any], memo[id(fn)])
    glb: dict[str, t.Any] = {"__builtins__": builtins, "__name__": "__main__"}
    closure = fn.__closure__
    if closure is not None:  # e.g. a decorator's wrapper: the wrapped function of __main__ travels shipped too
        closure = tuple(types.CellType(_ship_cell(cell, memo)) for cell in closure)
    copy = main_copy(fn, glb, closure=closure)
    copy.__dict__.update(fn.__dict__)
    memo[id(fn)] = copy
    source = fn.__globals__
    for name in global_names(fn):
        if name in source:
            value = source[name]
            glb[name] = ship(value, memo) if isinstance(value, types.FunctionType) else value
    return copy


def _ship_cell(cell: types.CellType, memo: dict[int, t.Any]) -> t.Any:
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell (a name bound later in the enclosing function)
        return None
    return ship(value, memo) if isinstance(value, types.FunctionType) else value


def remote_name_problems(fn: object, code_strategy: str = "DillCode") -> list[str]:
    """Return what would be undefined when ``fn`` runs on the endpoint, one sentence each.

    Checked: global names ``fn`` reads that are neither defined (in its globals, at the time of
    the check) nor builtins; with a source-text code strategy (``DillCodeSource``,
    ``PureSourceTextInspect``, ...), every non-builtin global, since only the source travels;
    modules it reads that cannot be imported by name (loaded from a file path, or ``__main__``).
    Functions of ``__main__`` it reads are checked too.

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

    def visit(f: types.FunctionType, label: str) -> None:
        if id(f) in seen:
            return
        seen.add(id(f))
        glb = f.__globals__
        for name in global_names(f):
            if name in glb:
                value = glb[name]
                if code_strategy in SOURCE_STRATEGIES and f is fn:
                    problems.append(
                        f"{label} reads the global {name!r}, but the code strategy {code_strategy} sends only "
                        "the function's source: import or define it inside the function"
                    )
                elif isinstance(value, types.ModuleType) and not _importable(value):
                    problems.append(
                        f"{label} reads the module {name!r} ({value.__name__}), which the endpoint cannot import by "
                        "name: make it an installed package or a module on the endpoint's PYTHONPATH"
                    )
                elif isinstance(value, types.FunctionType) and _from_main(value):
                    visit(value, f"{value.__qualname__} (called by {label})")
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

    if isinstance(fn, types.FunctionType):
        visit(fn, getattr(fn, "__qualname__", "the function"))
    return problems


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
    fn: t.Callable[..., t.Any], app_name: str, code_strategy: str = "DillCode"
) -> t.Callable[..., t.Any]:
    """Return a Python task's function shipped with its globals, or refuse it before submission.

    Parameters
    ----------
    fn : callable
        The function of a Python app (``register_app(pyobj=...)``) or of ``submit(func=...)``.
    app_name : str
        The app's name, for the message.
    code_strategy : str
        Class name of the endpoint serializer's code strategy.

    Raises
    ------
    bundle.errors.TaskSerializationError
        Naming every global ``fn`` reads that would be undefined on the endpoint.
    """
    from bundle.errors import TaskSerializationError

    shipped = ship(fn)
    problems = remote_name_problems(shipped, code_strategy)
    if problems:
        raise TaskSerializationError(
            f"the function of Python app {app_name!r} would fail on the endpoint (nothing was submitted): "
            + "; ".join(problems)
            + ".",
            what="the function",
        )
    return shipped
