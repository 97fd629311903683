"""Where GC-only sims run: where a libEnsemble worker would, on the endpoint's file system.

A stock worker changes into the workflow directory (``libE_specs.workflow_dir_path``, the calling
script's working directory by default) and runs each sim there, or in the sim directory that
libEnsemble's sim directory options ask for (``sim_dirs_make``, ``use_worker_dirs``,
``sim_input_dir``, ``sim_dir_copy_files``, ``sim_dir_symlink_files``, ``ensemble_dir_path``),
made by its ``EnsembleDirectory``.  GC-only mode does the same on the endpoint's side
(:func:`bundle.gconly.remote.make_sim_function` binds the plan made here):

* **local endpoint** (same machine, same file system): the same paths as a stock run;
  ``ensemble_copy_back`` runs libEnsemble's own copy back here once the manager returns.
* **remote endpoint** (a UUID): under ``gc_specs.remote_workdir`` on the endpoint's file system
  (default :data:`DEFAULT_REMOTE_WORKDIR`), which stands for the workflow directory: a relative
  ``ensemble_dir_path`` lands below it.  Paths of this machine cannot be read there: input files
  (``sim_input_dir``, ``sim_dir_copy_files``, ``sim_dir_symlink_files``) are refused unless they
  lie under an absolute ``remote_workdir`` (a file system the endpoint shares), and so is
  ``ensemble_copy_back``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import typing as t

from bundle.gconly.specs import GCOnlyConfigError

DEFAULT_REMOTE_WORKDIR = "~/libe_gc_runs"
"""Where sims run on a remote endpoint unless ``gc_specs.remote_workdir`` says: under the endpoint user's home."""

SIM_DIR_OPTIONS = (
    "sim_dirs_make",
    "use_worker_dirs",
    "sim_input_dir",
    "sim_dir_copy_files",
    "sim_dir_symlink_files",
    "ensemble_copy_back",
)
"""libEnsemble's ``libE_specs`` that make sims run in directories of their own (its ``sim_use``)."""

_INPUT_OPTIONS = ("sim_input_dir", "sim_dir_copy_files", "sim_dir_symlink_files")
_CARRIED = (*SIM_DIR_OPTIONS, "ensemble_dir_path", "reuse_output_dir", "calc_dir_id_width")
"""The ``libE_specs`` the endpoint's ``EnsembleDirectory`` reads for sims."""


@dataclasses.dataclass(frozen=True)
class SimDirs:
    """Where one run's sims run on the endpoint.

    Attributes
    ----------
    base : str
        The directory a sim runs in (the workflow directory's stand-in); ``~`` is the endpoint user's home.
    specs : dict or None
        The ``libE_specs`` libEnsemble's ``EnsembleDirectory`` makes each sim's directory from, with
        paths as the endpoint sees them; None when the run uses no sim directory option.
    local : bool
        The endpoint shares this machine's file system (the local endpoint).
    """

    base: str
    specs: dict[str, t.Any] | None
    local: bool

    @property
    def per_sim(self) -> bool:
        """Whether each sim needs its place (worker id and rows) to find its directory."""
        return self.specs is not None

    def bound(self) -> dict[str, t.Any]:
        """Return what the endpoint's runner is given (``sim_dirs``)."""
        return {"base": self.base, "specs": self.specs}


def plan_sim_dirs(
    libE_d: t.Mapping[str, t.Any], workflow_dir: pathlib.Path, local: bool, remote_workdir: str | None
) -> SimDirs:
    """Return where the run's sims run, refusing what cannot work on its endpoint.

    Parameters
    ----------
    libE_d : dict
        The run's validated ``libE_specs``.
    workflow_dir : pathlib.Path
        The run's workflow directory on this machine (absolute).
    local : bool
        Whether the endpoint is the local endpoint.
    remote_workdir : str or None
        ``gc_specs.remote_workdir``.

    Returns
    -------
    SimDirs

    Raises
    ------
    GCOnlyConfigError
        ``remote_workdir`` on the local endpoint; on a remote endpoint, ``ensemble_copy_back`` and input
        files of this machine.
    """
    used = any(libE_d.get(k) for k in SIM_DIR_OPTIONS)
    carried = {k: libE_d[k] for k in _CARRIED if libE_d.get(k) is not None}
    if local:
        if remote_workdir is not None:
            raise GCOnlyConfigError(
                "gc_specs.remote_workdir applies to remote endpoints; on the local endpoint sims run where "
                "libEnsemble's workers would (libE_specs.workflow_dir_path and the sim directory options)"
            )
        specs = {**carried, "workflow_dir_path": str(workflow_dir)} if used else None
        return SimDirs(str(workflow_dir), specs, True)

    base = remote_workdir or DEFAULT_REMOTE_WORKDIR
    if libE_d.get("ensemble_copy_back"):
        raise GCOnlyConfigError(
            "libE_specs.ensemble_copy_back copies the ensemble directory to this machine, which cannot read the "
            f"endpoint's file system (sims run under {base} there): unset it, and fetch the results from the "
            "endpoint yourself (e.g. with Globus Transfer), or return what you need from sim_f"
        )
    shared = pathlib.PurePosixPath(base) if os.path.isabs(base) else None
    for key in _INPUT_OPTIONS:
        value = libE_d.get(key)
        paths = [] if not value else [value] if isinstance(value, (str, os.PathLike)) else list(value)
        outside = [str(p) for p in paths if shared is None or not _under(pathlib.PurePosixPath(str(p)), shared)]
        if outside:
            raise GCOnlyConfigError(
                f"libE_specs.{key} names {outside}, on this machine, which the endpoint cannot read (sims run under "
                f"{base} on the endpoint's file system). Put the input files on the endpoint and have sim_f copy "
                "them, or, when the endpoint shares this file system, set gc_specs.remote_workdir to an absolute "
                "folder that holds them"
            )
    if not used:
        return SimDirs(base, None, False)
    specs = dict(carried, workflow_dir_path=base)
    ensemble = specs.get("ensemble_dir_path")
    if ensemble is not None:
        specs["ensemble_dir_path"] = _endpoint_path(pathlib.Path(ensemble), workflow_dir)
    return SimDirs(base, specs, False)


def _under(path: pathlib.PurePath, folder: pathlib.PurePath) -> bool:
    return path == folder or folder in path.parents


def _endpoint_path(path: pathlib.Path, workflow_dir: pathlib.Path) -> str:
    """Return ``ensemble_dir_path`` as the endpoint sees it: below the base when it is below the workflow dir here."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(workflow_dir))
    except ValueError:
        return str(path)  # an absolute path elsewhere names a folder of the endpoint's file system


def copy_back(libE_d: t.Mapping[str, t.Any], dirs: SimDirs) -> None:
    """Run libEnsemble's ``ensemble_copy_back`` for the sims' directories, as each stock worker does at its end.

    The local endpoint only (a remote one is refused at start).  Worker directories are copied
    whole, one per worker as each stock worker copies its own; otherwise the sim directories and
    the ensemble directory's other files.
    """
    if not dirs.local or dirs.specs is None or not libE_d.get("ensemble_copy_back"):
        return
    from libensemble.utils.loc_stack import LocationStack
    from libensemble.utils.output_directory import EnsembleDirectory

    ensemble = EnsembleDirectory(dict(dirs.specs))
    root = ensemble.ensemble_dir
    if not root.is_dir():
        return
    stacks: list[dict[t.Any, pathlib.Path]] = []
    workers = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"worker\d+", p.name))
    if libE_d.get("use_worker_dirs"):
        stacks = [{int(p.name[len("worker") :]): p} for p in workers]
    else:
        calc = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and re.match(r"sim\d", p.name)}
        stacks = [calc or {root: root}]
    for dirs_of in stacks:
        one = EnsembleDirectory(dict(dirs.specs), loc_stack=LocationStack())
        assert one.loc_stack is not None
        one.loc_stack.dirs.update(dirs_of)
        one.copy_back()
