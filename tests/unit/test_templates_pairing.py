"""Pairing: the submit side checks user_endpoint_config against the endpoint's template before any task leaves."""

import uuid
from unittest import mock

import globus_compute_sdk
import pytest

from bundle.endpoints.local import LocalEndpoint
from bundle.endpoints.session import GCSession
from bundle.errors import TemplateOptionError

EP = str(uuid.uuid4())

BAD = [
    ("slurm", {"partition": "debug\n#SBATCH --uid=0"}, "partition", "matching"),
    ("slurm", {"account": "$(id)"}, "account", "matching"),
    ("slurm", {"walltime": "1 day"}, "walltime", "matching"),
    ("slurm", {"nodes_per_block": 0}, "nodes_per_block", "from 1 to 10000"),
    ("slurm", {"exclusive": "yes"}, "exclusive", "not a boolean; write true or false"),
    ("slurm", {"worker_init": "x" * 9000}, "worker_init", "9000 characters is longer than 8192"),
    ("slurm", {"mpi_launcher": "mpirun"}, "mpi_launcher", "one of 'srun', 'mpiexec'"),
    ("slurm", {"partitions": "debug"}, "partitions", "allowed options:.*partition"),
    ("slurm", {"engine_type": "GlobusComputeEngine", "slots_per_node": 2}, "slots_per_node", "does not apply"),
    ("pbs", {"queue": "debug; qdel all"}, "queue", "matching"),
    ("pbs", {"filesystems": "home eagle"}, "filesystems", "matching"),
    ("pbs", {"cpus_per_node": 5000}, "cpus_per_node", "from 1 to 1024"),
    ("polaris", {}, "account", "needs option 'account'"),
    ("aurora", {"account": "`id`"}, "account", "matching"),
]


@pytest.mark.parametrize(("template", "options", "option", "allowed"), BAD)
def test_cloud_endpoint_refuses_bad_option_before_any_client(template, options, option, allowed):
    real = globus_compute_sdk.Executor
    fake = mock.create_autospec(real)
    with mock.patch("globus_compute_sdk.Executor", fake):
        with pytest.raises(TemplateOptionError, match=allowed) as ei:
            GCSession.get_executor(EP, options, template=template)
    assert ei.value.option == option and ei.value.template == template
    assert option in str(ei.value)
    assert not fake.called
    assert GCSession.cached() == 0


@pytest.mark.parametrize(("template", "options", "option", "allowed"), BAD)
def test_local_endpoint_refuses_bad_option_before_any_engine(template, options, option, allowed):
    with pytest.raises(TemplateOptionError, match=allowed) as ei:
        GCSession.get_executor(f"local:{template}", options)
    assert ei.value.option == option
    assert GCSession.cached() == 0


@pytest.mark.parametrize(
    ("template", "options"),
    [
        ("slurm", {"partition": "debug", "nodes_per_block": 2, "slots_per_node": 4}),
        ("perlmutter", {"account": "m1234", "constraint": "gpu", "gpus_per_node": 4}),
        ("polaris", {"account": "MyProject", "queue": "prod", "engine_type": "GlobusComputeEngine"}),
    ],
)
def test_good_options_reach_the_sdk_executor_unchanged(template, options):
    real = globus_compute_sdk.Executor
    fake = mock.create_autospec(real)
    fake.side_effect = lambda *a, **k: mock.create_autospec(real, instance=True)
    with mock.patch("globus_compute_sdk.Executor", fake):
        GCSession.get_executor(EP, options, template=template)
    # create_autospec checks the call against the real signature
    fake.assert_called_once_with(endpoint_id=EP, user_endpoint_config=options)


def test_local_slurm_endpoint_is_created_lazily_with_the_template():
    ep = GCSession.get_executor("local", {"partition": "debug"}, template="slurm")
    assert isinstance(ep, LocalEndpoint)
    assert ep.template.name == "slurm"
    assert ep.user_endpoint_config == {"partition": "debug"}
    with pytest.raises(TemplateOptionError, match="'qos'"):
        ep.user_endpoint_config = {"qos": "a b"}
