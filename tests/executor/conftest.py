"""Fixtures for the executor tests: MPI apps built with ``mpicc``, and one local endpoint per module."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import typing as t

import pytest

from bundle.endpoints.session import GCSession

APPS = pathlib.Path(__file__).parent / "apps"


def _mpicc() -> str:
    found = shutil.which("mpicc", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if not found:
        pytest.fail("mpicc not found: install the test extras (pip install -e '.[mpich,test]')")
    return found


def build(source: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Compile an MPI C program with ``mpicc``."""
    subprocess.run([_mpicc(), "-O2", "-o", str(out), str(source), "-lm"], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def mpi_probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The probe app (reports ranks, hosts, cwd and argv; sleeps and exits as asked)."""
    return build(APPS / "mpi_probe.c", tmp_path_factory.mktemp("apps") / "mpi_probe")


@pytest.fixture(scope="session")
def forces_app(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """libEnsemble's forces MPI app, built from the source its wheel ships."""
    import libensemble

    src = pathlib.Path(libensemble.__file__).parent / "tests/scaling_tests/forces/forces_app/forces.c"
    assert src.is_file(), f"libEnsemble no longer ships {src}"
    return build(src, tmp_path_factory.mktemp("forces") / "forces.x")


@pytest.fixture(autouse=True)
def _clear_session() -> t.Iterator[None]:
    """Keep endpoints across the tests of one module (overrides the per-test clear)."""
    yield


@pytest.fixture(autouse=True, scope="module")
def _clear_session_per_module() -> t.Iterator[None]:
    yield
    GCSession.clear()
