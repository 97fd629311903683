"""A user's script run as a user runs it: written to a folder, started with Python there, its console read back."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap


def run_sim_script(folder: pathlib.Path, template: str, body: str, timeout: float = 360) -> tuple[int, str]:
    """Write ``template`` with ``{body}`` (a sim's body) filled in as ``folder/run.py``, run it there.

    Parameters
    ----------
    folder : pathlib.Path
        The working directory (libEnsemble's history and ``ensemble.log`` land here).
    template : str
        The script, with ``{body}`` where the sim's body goes (four spaces in).
    body : str
        The sim's body, not indented.
    timeout : float
        Seconds before the run counts as hung (``subprocess.TimeoutExpired``).

    Returns
    -------
    tuple of (int, str)
        The exit code and the console: stdout, then stderr.
    """
    (folder / "run.py").write_text(template.format(body=textwrap.indent(body, "    ")))
    proc = subprocess.run(
        [sys.executable, "run.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    return proc.returncode, proc.stdout + proc.stderr
