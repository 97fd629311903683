"""``bundle.Ensemble``: libEnsemble's ``Ensemble`` that runs GC-only mode when asked to."""

from __future__ import annotations

import typing as t

from libensemble.ensemble import CHANGED_COMMS_WARN
from libensemble.ensemble import Ensemble as _LibeEnsemble
from libensemble.manager import LoggedException

from bundle.gconly.launch import REPORTED, gc_endpoint_of, run_gconly
from bundle.gconly.normalize import checked_sim_specs
from bundle.gconly.specs import GCOnlySpecs
from bundle.gconly.stopped import off_console_once_explained, stopped_by, workflow_dir_of

if t.TYPE_CHECKING:
    import numpy.typing as npt


class Ensemble(_LibeEnsemble):  # type: ignore[misc]
    """libEnsemble's ``Ensemble``, plus GC-only mode.

    When ``sim_specs.globus_compute_endpoint`` is set (``"local"``, ``"local:<template>"`` or an
    endpoint UUID), :meth:`run` starts no worker process: the generators run in this process (on
    worker threads as a stock run places them, or on the manager with ``gen_on_manager``) and
    each sim is submitted to the endpoint; ``nworkers`` (``LibeSpecs.nworkers`` or ``-n``) is the
    number of sims in flight (1 when unset).  Otherwise :meth:`run` is libEnsemble's, with each
    sim's return checked against ``sim_specs["out"]`` in its worker (a mismatch raises
    :class:`~bundle.gconly.SimOutputError` in the sim, naming the fields).

    Parameters
    ----------
    *args, **kwargs
        As for ``libensemble.Ensemble``.
    gc_specs : GCOnlySpecs or dict, optional
        GC-only options: the endpoint's template options (``user_endpoint_config``, ``template``),
        ``batch_size``, ``local_options``, ``poll_interval``, ``resume``, ``result_timeout``,
        ``offline_timeout``, ``require_online`` and ``fail_fast``.

    Attributes
    ----------
    sim_errors : dict
        After a GC-only run: error text of each failed sim, by ``sim_id``.

    Examples
    --------
    >>> ens = Ensemble(libE_specs=LibeSpecs(nworkers=8), gc_specs=GCOnlySpecs(batch_size=4))  # doctest: +SKIP
    >>> ens.sim_specs = SimSpecs(sim_f=my_sim, inputs=["x"], outputs=[("f", float)],
    ...                          globus_compute_endpoint="local")  # doctest: +SKIP
    """

    sim_specs: t.Any  # libEnsemble's (a dict or a SimSpecs)

    def __init__(self, *args: t.Any, gc_specs: GCOnlySpecs | t.Mapping[str, t.Any] | None = None, **kwargs: t.Any):
        super().__init__(*args, **kwargs)
        self.gc_specs = GCOnlySpecs.coerce(gc_specs)
        self.sim_errors: dict[int, str] = {}

    def run(self) -> tuple[npt.NDArray[t.Any], dict[t.Any, t.Any], int]:
        """Run the ensemble; GC-only mode when ``sim_specs.globus_compute_endpoint`` is set.

        Returns
        -------
        tuple
            ``(H, persis_info, exit_flag)``, as libEnsemble's ``Ensemble.run``.
        """
        if not gc_endpoint_of(self.sim_specs):
            given = self.sim_specs
            self.sim_specs = checked_sim_specs(given)  # each sim's return is checked where it runs
            try:
                with off_console_once_explained():
                    result: tuple[npt.NDArray[t.Any], dict[t.Any, t.Any], int] = super().run()
            except LoggedException as err:
                stopped = stopped_by(err, workflow_dir_of(self._libE_specs))
                if stopped is None:
                    raise
                raise stopped from None  # the message says it all: no traceback of libEnsemble's
            finally:
                self.sim_specs = given
            return result
        if self._libE_specs.comms != self._known_comms:
            raise ValueError(CHANGED_COMMS_WARN)
        persis_info: dict[t.Any, t.Any] = getattr(self, "persis_info", None) or {}
        try:
            out = run_gconly(
                self.sim_specs,
                self.gen_specs,
                self.exit_criteria,
                persis_info,
                self.alloc_specs,
                self._libE_specs,
                self.H0,
                gc_specs=self.gc_specs,
                nworkers=self.nworkers or 1,
            )
        except REPORTED as err:  # the message says it all: raised without the bundle's frames
            raise err.with_traceback(None) from None
        self.H, self.persis_info, self.flag, self.sim_errors = out.H, out.persis_info, out.exit_flag, out.sim_errors
        return out.H, out.persis_info, out.exit_flag
