"""Run one of libEnsemble's shipped test scripts as shipped, or with the bundle swapped in.

    python runner.py MODE SCRIPT [ARG ...]

``MODE`` is ``stock`` (the script as ``python SCRIPT ARG ...`` would run it), ``executor`` or
``gconly`` (see ``modes.py``).  The script runs with ``runpy`` as ``__main__``, with its own folder
first on ``sys.path`` and ``sys.argv`` as the command line would give it, so its relative paths,
sibling imports (``from check_libE_stats import ...``) and ``if __name__ == "__main__"`` block
behave as under plain ``python``.  The exit status is the script's.
"""

from __future__ import annotations

import importlib.util
import pathlib
import runpy
import sys

MODES = ("stock", "executor", "gconly")


def _load_modes() -> object:
    """Import ``modes.py`` from this folder under a name of its own (no ``tests`` package on ``sys.path``)."""
    path = pathlib.Path(__file__).resolve().with_name("modes.py")
    spec = importlib.util.spec_from_file_location("libe_gc_peer_modes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # forked libEnsemble workers and pickles find the swapped classes by name
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> None:
    """Install the mode's swap, then run the script as ``__main__``."""
    if len(argv) < 2 or argv[0] not in MODES:
        sys.exit(f"usage: runner.py {{{','.join(MODES)}}} SCRIPT [ARG ...]")
    mode, script, args = argv[0], pathlib.Path(argv[1]).resolve(), argv[2:]
    sys.argv = [str(script), *args]
    sys.path[0] = str(script.parent)  # as `python SCRIPT` puts the script's folder first
    if mode != "stock":
        modes = _load_modes()
        modes.INSTALL[mode]()  # type: ignore[attr-defined]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
