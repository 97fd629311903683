"""What ends an executor-mode run that a sim stopped with an error the bundle explains (bundle.gconly.stopped)."""

from __future__ import annotations

import numpy as np
from libensemble.manager import LoggedException
from libensemble.specs import LibeSpecs

from bundle.gconly.stopped import RunStoppedBySim, stopped_by, workflow_dir_of

MESSAGE = "not submitting more Python tasks: ...\nHint: install the package\nSet the executor's fail_fast=0"


def _reported(text: str) -> LoggedException:
    """libEnsemble's report of a worker's error, as its manager raises it."""
    return LoggedException("Received error message from worker 2", text, "See error details above and in ensemble.log")


def test_an_explained_error_is_said_once_with_the_worker_and_the_saved_history(tmp_path):
    np.save(tmp_path / "libE_history_at_abort_3.npy", np.zeros(1))
    stopped = stopped_by(_reported(f"bundle.executor.failfast.SystematicTaskError: {MESSAGE}"), tmp_path)
    assert isinstance(stopped, RunStoppedBySim) and isinstance(stopped, LoggedException)
    text = str(stopped)
    assert text.startswith(MESSAGE) and text.count("fail_fast=0") == 1
    assert "Raised by a sim on worker 2 (SystematicTaskError); details in ensemble.log" in text
    assert f"history saved in {tmp_path / 'libE_history_at_abort_3.npy'}" in text
    assert stopped.error_type == "bundle.executor.failfast.SystematicTaskError"


def test_other_errors_are_left_as_libensemble_reports_them(tmp_path):
    assert stopped_by(_reported("ValueError: a sim's own error"), tmp_path) is None
    assert stopped_by(RuntimeError("bundle.executor.failfast.SystematicTaskError: not a LoggedException")) is None
    assert "no history was saved" in str(stopped_by(_reported("bundle.gconly.normalize.SimOutputError: x"), tmp_path))


def test_the_workflow_dir_is_read_from_any_form_of_libe_specs(tmp_path):
    assert workflow_dir_of(None) is None
    assert workflow_dir_of({}) is None
    assert workflow_dir_of({"workflow_dir_path": "/a/b"}) == "/a/b"
    assert workflow_dir_of(LibeSpecs(workflow_dir_path=tmp_path)) == str(tmp_path)
