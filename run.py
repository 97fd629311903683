#!/usr/bin/env python3
"""Set up a virtual environment in ./.venv (once) and run the demo or the tests.

    python3 run.py demo      # an ensemble on the local endpoint (libe-gc demo)
    python3 run.py tests     # ruff, mypy and the whole pytest suite

Only Python >= 3.10 with pip and venv is needed; everything else (including
MPICH's mpiexec and mpicc) is installed into .venv from PyPI.  Extra arguments
go to ``libe-gc demo`` or to pytest.  The tests run on ``LIBE_GC_TEST_WORKERS``
pytest-xdist workers (default 2; 0 runs them in this process), tests that share
the Slurm cluster, the stand-in web service or GPU locks one after another
(``tests/serial_groups.py``); ``-n`` among the arguments overrides it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("LIBE_GC_VENV", ROOT / ".venv"))
BIN = VENV / "bin"
EXTRAS = {"demo": "mpich", "tests": "mpich,test"}
LINTED = ["bundle", "tests", "benchmarks", "examples", "docs", "run.py"]
WORKERS = os.environ.get("LIBE_GC_TEST_WORKERS", "2")


def pytest_args(rest: list[str]) -> list[str]:
    """Return the arguments for pytest: ``rest``, run on ``WORKERS`` xdist workers unless ``rest`` chooses (``-n``)."""
    if "no:xdist" in rest or any(a.startswith(("-n", "--numprocesses")) for a in rest):
        return ["-ra", *rest]
    return ["-ra", "-n", WORKERS, *rest]


def _run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def ensure_venv(extras: str) -> None:
    """Create .venv and install the package with ``extras`` unless already done for this pyproject."""
    if not (BIN / "python").exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".libe-gc-{extras.replace(',', '-')}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    _run([str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-e", f"{ROOT}[{extras}]"])
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` or ``tests``."""
    if sys.version_info[:2] < (3, 10):  # noqa: UP036 - say why, rather than fail in pip
        print(f"libe-gc-bundle needs Python >= 3.10; this is {sys.version.split()[0]}")
        return 2
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_venv(EXTRAS[what])
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(VENV))
    try:
        if what == "demo":
            _run([str(BIN / "libe-gc"), "demo", *rest], env=env, cwd=ROOT)
        else:
            _run([str(BIN / "ruff"), "check", *LINTED], env=env, cwd=ROOT)
            _run([str(BIN / "ruff"), "format", "--check", *LINTED], env=env, cwd=ROOT)
            _run([str(BIN / "mypy")], env=env, cwd=ROOT)
            _run([str(BIN / "python"), "-m", "pytest", *pytest_args(rest)], env=env, cwd=ROOT)
    except subprocess.CalledProcessError as err:
        return err.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
