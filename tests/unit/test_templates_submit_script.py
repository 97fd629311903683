"""The batch script Parsl writes from each Slurm/PBS template carries the directive every option implies.

PBS cannot run here, and these options name accounts and partitions that do not
exist, so ``sbatch``/``qsub`` are stand-ins on PATH that record their arguments
and print a job id; the script is the one the real provider writes.
"""

import random
import re
import secrets

import pytest

from bundle.endpoints.templates import get_template
from tests.unit.stand_ins import put_on_path

SLURM = ["slurm", "perlmutter", "frontier"]
PBS = ["pbs", "polaris", "aurora"]


def _token(prefix="t"):
    return prefix + secrets.token_hex(4)


@pytest.fixture
def fake_scheduler(tmp_path, monkeypatch):
    """``sbatch`` and ``qsub`` that record their arguments and answer with a job id."""
    log = tmp_path / "submit.log"
    answers = {"sbatch": "Submitted batch job 4242", "qsub": "4242.pbs-server"}
    put_on_path(
        tmp_path / "bin",
        {cmd: f'echo "{cmd} $*" >> "{log}"\necho "{answer}"' for cmd, answer in answers.items()},
        monkeypatch,
    )
    return log


def _submit(name, options, tmp_path):
    config, stood_in = get_template(name).load_offline(options)
    provider = config.engine.executor.provider
    provider.script_dir = str(tmp_path / "scripts")
    (tmp_path / "scripts").mkdir(exist_ok=True)
    job_id = provider.submit("echo the-worker-pool", 1, "parsl.libe-gc-test")
    assert job_id.startswith("4242")
    (script,) = [p for p in (tmp_path / "scripts").iterdir() if p.name.startswith("parsl.libe-gc-test")]
    return script.read_text(), stood_in, config


@pytest.mark.parametrize("name", SLURM)
@pytest.mark.parametrize("engine_type", ["GlobusMPIEngine", "GlobusComputeEngine"])
def test_slurm_script_carries_every_option(name, engine_type, tmp_path, fake_scheduler):
    tok = {k: _token() for k in ("partition", "account", "qos", "constraint", "licenses", "reservation", "ifname")}
    init = _token("init")
    hours, minutes = random.randint(1, 20), random.randint(0, 59)
    nodes, gpus = random.randint(2, 64), random.randint(1, 8)
    options = {
        "engine_type": engine_type,
        "partition": tok["partition"],
        "account": tok["account"],
        "qos": tok["qos"],
        "constraint": tok["constraint"],
        "licenses": tok["licenses"],
        "reservation": tok["reservation"],
        "network_interface": tok["ifname"],
        "gpus_per_node": gpus,
        "walltime": f"{hours:02d}:{minutes:02d}:00",
        "nodes_per_block": nodes,
        "exclusive": True,
        "worker_init": f"echo {init}",
    }
    script, stood_in, config = _submit(name, options, tmp_path)
    for key in ("partition", "account", "qos", "constraint", "licenses", "reservation"):
        assert f"#SBATCH --{key}={tok[key]}\n" in script, (key, script)
    assert f"#SBATCH --gpus-per-node={gpus}\n" in script
    assert f"#SBATCH --nodes={nodes}\n" in script
    assert f"#SBATCH --time={hours * 60 + minutes}\n" in script
    assert "#SBATCH --exclusive\n" in script
    assert "#SBATCH --no-requeue\n" in script
    assert f"\necho {init}\n" in script
    # the interface is resolved on the endpoint's host, not written to the script
    assert stood_in == [tok["ifname"]]
    assert config.engine.executor.address == "127.0.0.1"
    launch = [line for line in script.splitlines() if "the-worker-pool" in line]
    if engine_type == "GlobusMPIEngine":
        assert launch == ["echo the-worker-pool"]  # SimpleLauncher: one worker pool per block
    else:
        assert re.search(r"^srun .*--ntasks", script, re.M), script  # SrunLauncher: one worker pool per node
    assert "sbatch " in fake_scheduler.read_text()


@pytest.mark.parametrize("name", SLURM)
def test_slurm_exclusive_false_leaves_the_directive_out(name, tmp_path, fake_scheduler):
    script, _, _ = _submit(name, {"account": "abc", "exclusive": False}, tmp_path)
    assert "--exclusive" not in script


@pytest.mark.parametrize("name", SLURM)
def test_slurm_packing_prelude_only_when_asked(name, tmp_path, fake_scheduler):
    script, _, _ = _submit(name, {"account": "abc", "slots_per_node": 3}, tmp_path)
    assert "$(seq 1 3)" in script and "unset SLURM_NODELIST" in script and "export SLURM_EXACT=1" in script
    (tmp_path / "scripts").rename(tmp_path / "scripts-packed")
    script, _, _ = _submit(name, {"account": "abc"}, tmp_path)
    assert "SLURM_NODELIST" not in script


@pytest.mark.parametrize("name", PBS)
@pytest.mark.parametrize("engine_type", ["GlobusMPIEngine", "GlobusComputeEngine"])
def test_pbs_script_carries_every_option(name, engine_type, tmp_path, fake_scheduler):
    queue, account, ifname = _token(), _token(), _token()
    fs = f"{_token()}:{_token()}"
    sel_key, sel_val = _token("k"), _token("v")
    init = _token("init")
    nodes, cpus = random.randint(2, 64), random.randint(2, 256)
    walltime = f"{random.randint(1, 20):02d}:{random.randint(0, 59):02d}:00"
    place = random.choice(["scatter", "pack", "free", "scatter:excl"])
    options = {
        "engine_type": engine_type,
        "queue": queue,
        "account": account,
        "filesystems": fs,
        "select_options": f"{sel_key}={sel_val}",
        "place": place,
        "cpus_per_node": cpus,
        "nodes_per_block": nodes,
        "walltime": walltime,
        "network_interface": ifname,
        "worker_init": f"echo {init}",
    }
    script, stood_in, _ = _submit(name, options, tmp_path)
    assert f"#PBS -q {queue}\n" in script
    assert f"#PBS -A {account}\n" in script
    assert f"#PBS -l filesystems={fs}\n" in script
    assert f"#PBS -l place={place}\n" in script
    assert f"#PBS -l select={nodes}:ncpus={cpus}:{sel_key}={sel_val}\n" in script
    assert f"#PBS -l walltime={walltime}\n" in script
    assert f"\necho {init}\n" in script
    assert stood_in == [ifname]
    qsub = fake_scheduler.read_text()
    assert re.search(rf"^qsub +-q {queue} -A {account} \S+parsl\.libe-gc-test", qsub, re.M), qsub
    if engine_type == "GlobusMPIEngine":
        # MPI mode: the prelude's node file lists each node once (slots_per_node 1)
        assert "$(seq 1 1)" in script and 'export PBS_NODEFILE="$_libe_gc_nodefile"' in script
    else:
        assert "mpiexec " in script and "-n $WORKERCOUNT" in script


def test_polaris_worker_pools_use_alcf_binding(tmp_path, fake_scheduler):
    script, _, _ = _submit("polaris", {"account": "abc", "engine_type": "GlobusComputeEngine"}, tmp_path)
    assert "mpiexec --cpu-bind none --depth=64 --ppn 1 -n $WORKERCOUNT" in script
    assert "#PBS -l select=1:ncpus=64:ngpus=4\n" in script
    assert "#PBS -l filesystems=home:eagle\n" in script


def test_aurora_defaults_in_script(tmp_path, fake_scheduler):
    script, stood_in, _ = _submit("aurora", {"account": "abc"}, tmp_path)
    assert "#PBS -l select=1:ncpus=208\n" in script
    assert "#PBS -l filesystems=home:flare\n" in script
    assert "#PBS -q debug\n" in script
    assert stood_in in ([], ["bond0"])
