"""Which tests share something of this machine, so that pytest-xdist runs them one after another on one worker.

``python3 run.py tests`` runs the suite on two pytest-xdist workers: much of a test is waiting (an engine's start,
a Slurm job, a heartbeat), so two workers take about half the wall time of one.  Most tests keep what they use to
themselves (their own ``tmp_path``, run folder, RabbitMQ virtual host and local endpoint); those listed in
``SERIAL_GROUPS`` do not, and each group runs as one unit of work on one worker.  Every other test module is a unit
of its own (pytest-xdist's ``loadscope``: a module's fixtures are set up once).

The groups are given to pytest-xdist's scheduler directly (``pytest_xdist_make_scheduler``), not through
``xdist_group`` marks, which pytest 9.2 no longer honours (pytest-dev/pytest-xdist#1386).
"""

from __future__ import annotations

import typing as t

SERIAL_GROUPS: dict[str, tuple[str, ...]] = {
    # The 3-node Slurm cluster (the node-loss tests take nodes away), the stand-in web service's fixed port 5000, the
    # RabbitMQ broker a session may start and then stop (tests/broker.py), and the GPU lock files of this host's name
    # (the local template's stand-in devices), which the benchmarks use too.
    "cluster": (
        "tests/slurm/",
        "tests/realendpoint/",
        "tests/contract/",
        "tests/test_benchmarks.py",
        "tests/executor/test_gpus_local.py",
        "tests/executor/test_packing_as_documented.py",
        "tests/gconly/test_gconly_gpus.py",
    ),
    # The peer suite starts every run its session selected (two at a time): one worker holds them all.
    "peer": ("tests/peer/test_peer.py",),
}


def group_of(nodeid: str) -> str | None:
    """The serial group of a test (its pytest node id), or None."""
    for group, prefixes in SERIAL_GROUPS.items():
        if nodeid.startswith(prefixes):
            return group
    return None


class SerialGroups:
    """pytest-xdist plugin: a ``loadscope`` scheduler whose units are the groups, then test modules.

    The groups are the longest units (the cluster's is about half the suite), so they are handed out first: each
    worker collects them first (:meth:`pytest_collection_modifyitems`) and the scheduler keeps that order.
    """

    def pytest_collection_modifyitems(self, config: t.Any, items: list[t.Any]) -> None:
        """In a pytest-xdist worker, move the serial groups' tests to the front (each group's own order kept)."""
        if not hasattr(config, "workerinput"):
            return
        order = list(SERIAL_GROUPS)
        rank = {id(item): order.index(g) if (g := group_of(item.nodeid)) else len(order) for item in items}
        items.sort(key=lambda item: rank[id(item)])  # stable

    def pytest_xdist_make_scheduler(self, config: t.Any, log: t.Any) -> t.Any:
        """Return the scheduler for ``--dist load`` (what ``-n`` alone means); other modes keep pytest-xdist's own."""
        if config.getvalue("dist") != "load":
            return None
        config.option.loadscopereorder = False  # the order the workers collected: the groups first
        from xdist.scheduler import LoadScopeScheduling

        class GroupScheduling(LoadScopeScheduling):
            """Units of work: each serial group whole (the largest first), then each other test module."""

            def _split_scope(self, nodeid: str) -> str:
                return group_of(nodeid) or super()._split_scope(nodeid)

        return GroupScheduling(config, log)
