"""libe-gc doctor's checks: each says what it found and how to fix it, and never shows a secret."""

from __future__ import annotations

import platform
import subprocess
from unittest import mock

import globus_compute_sdk
import pytest

from bundle.cli import doctor

SECRET = "s3cr3t-do-not-print-7f2a"


def test_offline_checks_find_this_environment():
    checks = {c.name: c for c in doctor.run_checks("local", {"slots_per_node": 2})}
    assert checks["Python (submit side)"].status == doctor.OK
    assert checks["globus-compute-sdk"].status == doctor.OK
    assert checks["launcher mpiexec"].status == doctor.OK, checks["launcher mpiexec"]
    assert checks["template local"].status == doctor.OK


def test_bad_template_option_fails_naming_it():
    check = doctor.check_template("local", {"slots_per_node": "many"})
    assert check.status == doctor.FAIL and "slots_per_node" in check.found and check.fix


def _store_token(home, **token):
    """Write a token the way the SDK's login does (globus_sdk's SQLiteTokenStorage, namespace user/production)."""
    from globus_sdk.token_storage import SQLiteTokenStorage, TokenStorageData

    (home / ".globus_compute").mkdir(exist_ok=True)
    storage = SQLiteTokenStorage(home / ".globus_compute" / "storage.db", namespace="user/production")
    data = {"resource_server": "funcx_service", "identity_id": None, "scope": "all", "token_type": "Bearer"}
    storage.store_token_data_by_resource_server({"funcx_service": TokenStorageData(**{**data, **token})})
    storage.close()


def test_credentials_reported_without_their_values(tmp_path):
    client_id = "11111111-2222-3333-4444-555555555555"
    both = {"GLOBUS_COMPUTE_CLIENT_ID": client_id, "GLOBUS_COMPUTE_CLIENT_SECRET": SECRET}
    check = doctor.check_credentials(both, home=str(tmp_path))
    assert check.status == doctor.OK and SECRET not in repr(check) and client_id not in repr(check)
    not_uuid = doctor.check_credentials(dict(both, GLOBUS_COMPUTE_CLIENT_ID=SECRET), home=str(tmp_path))
    assert not_uuid.status == doctor.FAIL and "UUID" in not_uuid.found and SECRET not in repr(not_uuid)
    half = doctor.check_credentials({"GLOBUS_COMPUTE_CLIENT_SECRET": SECRET}, home=str(tmp_path))
    assert half.status == doctor.FAIL and "GLOBUS_COMPUTE_CLIENT_ID" in half.fix and SECRET not in repr(half)
    none = doctor.check_credentials({}, home=str(tmp_path))
    assert none.status == doctor.WARN and "login" in none.fix


def test_an_empty_or_expired_token_store_is_not_a_login(tmp_path):
    """The SDK creates storage.db on any login attempt, even an aborted one: existing is not enough."""
    import time

    from globus_sdk.token_storage import SQLiteTokenStorage

    (tmp_path / ".globus_compute").mkdir(exist_ok=True)
    SQLiteTokenStorage(tmp_path / ".globus_compute" / "storage.db", namespace="user/production").close()
    empty = doctor.check_credentials({}, home=str(tmp_path))
    assert empty.status == doctor.WARN and "no Globus Compute token" in empty.found
    _store_token(tmp_path, access_token=SECRET, refresh_token=None, expires_at_seconds=int(time.time()) - 10)
    expired = doctor.check_credentials({}, home=str(tmp_path))
    assert expired.status == doctor.WARN and "expired" in expired.found and SECRET not in repr(expired)
    _store_token(tmp_path, access_token=SECRET, refresh_token=SECRET, expires_at_seconds=int(time.time()) - 10)
    refresh = doctor.check_credentials({}, home=str(tmp_path))
    assert refresh.status == doctor.OK and "refresh token" in refresh.found and SECRET not in repr(refresh)
    other_env = doctor.check_credentials({"GLOBUS_SDK_ENVIRONMENT": "sandbox"}, home=str(tmp_path))
    assert other_env.status == doctor.WARN  # the SDK reads user/sandbox there


def test_options_without_a_template_are_refused():
    check = doctor.check_template(None, {"acount": "m1"})
    assert check.status == doctor.FAIL and "--template" in check.fix
    assert doctor.check_template(None, {}).status == doctor.OK


def test_scheduler_detection():
    assert "Slurm job 42" in doctor.check_scheduler({"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n1"}).found
    assert "PBS job 7.pbs" in doctor.check_scheduler({"PBS_JOBID": "7.pbs"}).found


def test_python_mismatch_with_the_endpoint_fails_with_a_fix():
    local = platform.python_version()
    major, minor = local.split(".")[:2]
    assert doctor.compare_endpoint(local, f"{major}.{minor}.0", "4.19.0").status == doctor.OK
    other = f"{major}.{int(minor) + 1}.1"
    bad = doctor.compare_endpoint(local, other, "4.19.0")
    assert bad.status == doctor.FAIL and f"{major}.{int(minor) + 1}" in bad.fix
    assert doctor.compare_endpoint(local, None, None).status == doctor.WARN


def test_cloud_endpoint_metadata_through_the_real_client_signature():
    client = mock.create_autospec(globus_compute_sdk.Client, instance=True)
    schema = {"type": "object", "properties": {"account": {"type": "string"}}, "additionalProperties": False}
    client.get_endpoint_metadata.return_value = {
        "python_version": platform.python_version(),
        "endpoint_version": "4.19.0",
        "user_config_schema": schema,
    }
    ep = "5f0c6ae5-8d2c-4fb8-9f0a-1b0c7f6f2e11"
    checks = doctor.check_endpoint(ep, {"acount": "x"}, client=client)
    client.get_endpoint_metadata.assert_called_once_with(ep)
    assert checks[0].status == doctor.OK
    assert checks[1].status == doctor.FAIL and "acount" in checks[1].found
    client.get_endpoint_metadata.side_effect = RuntimeError("network down")
    (failed,) = doctor.check_endpoint(ep, None, client=client)
    assert failed.status == doctor.FAIL and "login" in failed.fix


def _fake_tool(folder, name: str, output: str, code: int = 0) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\n/bin/cat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    tool.chmod(0o755)


QSTAT_Q = """Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type
---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----
debug                0     0 yes yes     0     0     0     0     0     0 Exec
prod                 0     0 yes yes     0     0     0     0     0     0 Rout"""


def test_a_partition_or_queue_is_checked_against_the_scheduler_that_answers(tmp_path, monkeypatch):
    _fake_tool(tmp_path, "sinfo", "debug\nlong")
    _fake_tool(tmp_path, "qstat", QSTAT_Q)
    monkeypatch.setenv("PATH", str(tmp_path))
    (bad,) = doctor.check_scheduler_names({"partition": "nosuch"})
    assert bad.status == doctor.FAIL and "no partition 'nosuch'" in bad.found and "debug, long" in bad.found
    assert "sinfo" in bad.fix
    assert doctor.check_scheduler_names({"partition": "long"})[0].status == doctor.OK
    (queue,) = doctor.check_scheduler_names({"queue": "nosuch"})
    assert queue.status == doctor.FAIL and "debug, prod" in queue.found and "qstat -Q" in queue.fix
    assert doctor.check_scheduler_names({"queue": "prod@server"})[0].status == doctor.OK
    assert doctor.check_scheduler_names({"account": "m1"}) == []
    # a scheduler that does not answer (or none at all): said, not failed
    _fake_tool(tmp_path, "sinfo", "slurm_load_partitions: Unable to contact slurm controller", code=1)
    (unchecked,) = doctor.check_scheduler_names({"partition": "nosuch"})
    assert unchecked.status == doctor.OK and "not checked" in unchecked.found
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert "not checked" in doctor.check_scheduler_names({"queue": "q"})[0].found


def test_doctor_refuses_a_partition_this_slurm_does_not_have():
    """On a machine whose Slurm answers (the CI cluster has partition 'debug'), a made-up one fails the doctor."""
    import shutil

    if shutil.which("sinfo") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        pytest.skip("no Slurm answers here")
    from click.testing import CliRunner

    from bundle.cli import main

    listed = subprocess.run(["sinfo", "-h", "-a", "-o", "%R"], capture_output=True, text=True).stdout.split()
    out = CliRunner().invoke(
        main, ["doctor", "--template", "slurm", "--option", "partition=nosuch"], env={"COLUMNS": "250"}
    )
    assert out.exit_code == 1 and "partition nosuch" in out.output and "has no partition 'nosuch'" in out.output
    good = CliRunner().invoke(
        main, ["doctor", "--template", "slurm", "--option", f"partition={listed[0]}"], env={"COLUMNS": "250"}
    )
    assert f"partition {listed[0]}" in good.output and "has no partition" not in good.output
