"""What a failed task's error names: the remote exception's type and message, without the SDK's help text."""

from __future__ import annotations

from globus_compute_sdk.errors import TaskExecutionFailed

from bundle.wire.remote_cause import cause_line, cause_signature, error_text, hint_for, remote_exception


def _remote(error_line: str, source: str = "pickle.dumps(state)") -> str:
    """A remote traceback as the endpoint sends it (``TaskExecutionFailed.remote_data``)."""
    return (
        "Traceback (most recent call last):\n"
        '  File "/work/sims.py", line 12, in sim\n'
        f"    {source}\n"
        "    ^^^^^^^^^^^^^^^^^^^\n"
        f"{error_line}\n"
    )


def test_the_sdk_help_paragraph_is_not_the_cause():
    # A traceback that mentions pickle makes the SDK append a help paragraph ending in a URL.
    value = TaskExecutionFailed(_remote("ValueError: bad row 3"))
    key = TaskExecutionFailed(_remote("KeyError: 'f'"))
    assert str(value).rstrip().endswith("#specifying-serde-strategy"), "the SDK no longer appends its help text"
    for text in (str(value), f"TaskExecutionFailed: {value}", error_text(value)):
        assert cause_line(text) == "ValueError: bad row 3", text
    assert cause_signature(str(value)) != cause_signature(str(key)), "two different errors compared alike"
    assert cause_signature(str(value)) == cause_signature(str(TaskExecutionFailed(_remote("ValueError: bad row 17"))))
    assert "serialization" not in error_text(value) and "http" not in error_text(value)


def test_type_and_whole_message_are_compared():
    first = _remote("ValueError: cannot use\nthe first point", source="check(x)")
    second = _remote("ValueError: cannot use\nthe second point", source="check(x)")
    assert remote_exception(first) == "ValueError: cannot use\nthe first point"
    assert cause_line(first) == "ValueError: cannot use"
    assert cause_signature(first) != cause_signature(second)


def test_a_chained_traceback_names_its_last_exception():
    text = _remote("KeyError: 'x'") + "\nDuring handling of the above exception, another exception occurred:\n\n"
    text += _remote("NameError: name 'np' is not defined", source="np.zeros(3)")
    assert cause_line(text) == "NameError: name 'np' is not defined"


def test_the_bundles_own_errors_are_read_by_their_first_paragraph():
    lost = "BlockLostError: the sim failed: the block (worker pool) it ran on was lost: job 5 ended\n\n"
    lost += error_text(TaskExecutionFailed(_remote("parsl.executors.errors.ManagerLost: loss of manager 7")))
    assert cause_line(lost).startswith("BlockLostError: the sim failed")
    assert cause_line("sim_f returned a str where H_o belongs") == "sim_f returned a str where H_o belongs"
    assert cause_line("") == "(no error text)"


def test_hints_fit_the_cause():
    missing = hint_for(_remote("ModuleNotFoundError: No module named 'nosuch.sub'", source="import nosuch.sub"))
    assert "no module 'nosuch'" in missing and "install" in missing and "travels by value" not in missing
    own = hint_for("ModuleNotFoundError: No module named 'my_sims'", own_module="my_sims")
    assert "own module 'my_sims'" in own and "travels by value" in own
    assert "'np'" in hint_for(_remote("NameError: name 'np' is not defined", source="np.zeros(3)"))
    assert "sim_specs['out']" in hint_for("SimOutputError: sim_f returned H_o with fields [('F', float32)], ...")
    assert "lost the workers" in hint_for("BlockLostError: the sim failed: the block (worker pool) it ran on was lost")
    assert "same version" in hint_for("ImportError: cannot import name 'x' from 'y'")
    assert hint_for("ZeroDivisionError: division by zero", subject="the Python function").startswith(
        "fix the Python function"
    )
