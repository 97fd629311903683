"""Copies of functions that serializers send by value, so the endpoint need not have this package.

dill (the SDK's default code serializer) pickles a function whose module is ``__main__`` by its
code and globals rather than by reference to its module.  :func:`main_copy` makes such a copy
with the globals it is given; :func:`by_value` gives a function only builtins, values bound by
name, and by-value copies of the functions it calls (which share those globals).  Such a
function may use only builtins, what it imports itself, and the names bound here.
"""

from __future__ import annotations

import builtins
import types
import typing as t


def main_copy(
    code_of: t.Callable[..., t.Any],
    glb: dict[str, t.Any],
    name: str | None = None,
    closure: tuple[types.CellType, ...] | None = None,
) -> types.FunctionType:
    """Return a copy of ``code_of`` with globals ``glb`` and module ``__main__``.

    Parameters
    ----------
    code_of : function
        The function whose code, defaults and docstring to copy.
    glb : dict
        The copy's globals.
    name : str, optional
        The copy's name and qualified name (default: the function's).
    closure : tuple of cells, optional
        The copy's closure (default: none).

    Returns
    -------
    function
        The copy.
    """
    assert isinstance(code_of, types.FunctionType)
    fn = types.FunctionType(code_of.__code__, glb, name or code_of.__name__, code_of.__defaults__, closure)
    fn.__kwdefaults__ = code_of.__kwdefaults__
    fn.__module__ = "__main__"
    fn.__qualname__ = name or code_of.__qualname__
    fn.__doc__ = code_of.__doc__
    return fn


def by_value(
    code_of: t.Callable[..., t.Any],
    name: str | None = None,
    callees: t.Iterable[t.Callable[..., t.Any]] = (),
    **bound: t.Any,
) -> types.FunctionType:
    """Return a copy of ``code_of`` whose globals are the builtins, ``bound`` and copies of ``callees``.

    Parameters
    ----------
    code_of : function
        The function to copy.
    name : str, optional
        The copy's name (default: the function's).
    callees : iterable of function
        Functions ``code_of`` calls by their names; copied the same way, sharing the globals.
    **bound
        Values bound by name in the globals.

    Returns
    -------
    function
        The copy.
    """
    glb: dict[str, t.Any] = {"__builtins__": builtins, "__name__": "__main__", **bound}
    for callee in callees:
        glb[callee.__name__] = main_copy(callee, glb)
    return main_copy(code_of, glb, name)
