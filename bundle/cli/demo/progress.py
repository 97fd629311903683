"""A live progress bar for ensembles, through libEnsemble's ``live_data`` hook."""

from __future__ import annotations

import typing as t


class RichProgress:
    """Show sims done out of ``sim_max`` with a rich progress bar.

    An object for ``LibeSpecs(live_data=...)``: libEnsemble's manager calls ``live_update``
    after each batch of results and ``finalize`` at the end.  (It does not subclass
    ``libensemble.tools.live_data.live_data.LiveData``, whose module fails to import in
    libEnsemble 1.6.1; the manager needs only the two methods.)

    Parameters
    ----------
    description : str
        Label of the bar.
    sim_max : int
        Sims the run ends after.
    progress : rich.progress.Progress, optional
        A running progress display to add the bar to (one is made and stopped at the end otherwise).
    """

    def __init__(self, description: str, sim_max: int, progress: t.Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._own = progress is None
        self.progress = progress or Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
        )
        if self._own:
            self.progress.start()
        self.task_id = self.progress.add_task(description, total=sim_max, note="")

    def live_update(self, hist: t.Any) -> None:
        """Advance the bar to the number of sims ended so far."""
        done = int(hist.H["sim_ended"].sum())
        self.progress.update(self.task_id, completed=done, note=f"{done} done")

    def finalize(self, hist: t.Any) -> None:
        """Show the final count and stop the display if this bar owns it."""
        self.live_update(hist)
        if self._own:
            self.progress.stop()
