"""A process that goes on after Ctrl-C (a notebook): the next run starts afresh, and a much later Ctrl-C
is a first one again (it stops that run; it does not end the process)."""

import os
import subprocess
import sys
import textwrap

from tests.interrupt.runs import ROOT

SCRIPT = textwrap.dedent(
    """
    import os, signal, time
    from bundle import GCSession
    from bundle.errors import RunInterrupted
    from bundle.processes import interrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal starts it (CI may pass it ignored)


    def ctrl_c():
        # SIGINT to this process: the bundle's handler must raise RunInterrupted (not end the process).
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except RunInterrupted:
            return
        raise SystemExit("no RunInterrupted")


    first = GCSession.get_executor("local", {"engine_type": "GlobusComputeEngine"})
    assert interrupt.install()
    ctrl_c()
    assert interrupt.interrupted() == signal.SIGINT
    time.sleep(1)  # the stoppers finish
    assert GCSession.cached() == 0, "the stopped endpoint is still cached"
    interrupt.install()  # as the next run sets up
    assert interrupt.interrupted() == 0 and interrupt.error() is None
    second = GCSession.get_executor("local", {"engine_type": "GlobusComputeEngine"})
    assert second is not first
    assert second.submit(pow, 2, 10).result(timeout=120) == 1024
    print("NEXT RUN OK")

    # A later Ctrl-C, long after the first and with no new set-up between, is a first one again (not an exit).
    interrupt.SECOND_WITHIN = 1.0
    ctrl_c()
    interrupt._state["thread"].join(15)  # the endpoint is stopped
    time.sleep(1.5)  # and more than SECOND_WITHIN has passed
    ctrl_c()
    print("LATER CTRL-C OK")
    """
)


def test_the_next_run_after_an_interrupt_starts_afresh(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0 and "LATER CTRL-C OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "libe-gc: SIGINT: stopping the run" in proc.stderr
