"""The demo's objective: the six-hump camel function, smoothed over a cloud of points.

As an MPI app (``python -m bundle.cli.demo.objective X0 X1 OUTFILE [SAMPLES]``) each
rank evaluates its share of the cloud around ``(X0, X1)``; rank 0 reduces the
mean and writes it to ``OUTFILE``, which the sim then reads, as sims read the
output files of real simulation codes.
"""

from __future__ import annotations

import math
import sys


def six_hump_camel(x0: float, x1: float) -> float:
    """Return the six-hump camel function at ``(x0, x1)`` (two global minima of -1.0316)."""
    return (4 - 2.1 * x0**2 + x0**4 / 3) * x0**2 + x0 * x1 + (-4 + 4 * x1**2) * x1**2


def cloud(x0: float, x1: float, samples: int, start: int = 0, step: int = 1) -> list[tuple[float, float]]:
    """Points on a small spiral around ``(x0, x1)``: the ``start``-th, then every ``step``-th."""
    return [
        (x0 + 0.01 * k / samples * math.cos(k), x1 + 0.01 * k / samples * math.sin(k))
        for k in range(start, samples, step)
    ]


def smoothed(x0: float, x1: float, samples: int = 64) -> float:
    """Mean of the function over the cloud (what the MPI app computes, in one process)."""
    pts = cloud(x0, x1, samples)
    return sum(six_hump_camel(a, b) for a, b in pts) / len(pts)


def main(argv: list[str]) -> int:
    """Run as an MPI app: split the cloud over the ranks and write the mean from rank 0."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    x0, x1, outfile = float(argv[0]), float(argv[1]), argv[2]
    samples = int(argv[3]) if len(argv) > 3 else 64
    mine = sum(six_hump_camel(a, b) for a, b in cloud(x0, x1, samples, rank, size))
    total = comm.reduce(mine, op=MPI.SUM, root=0)
    if rank == 0:
        assert total is not None
        with open(outfile, "w") as fh:
            fh.write(f"{total / samples!r}\n")
        print(f"objective at ({x0:.4f}, {x1:.4f}) from {size} ranks: {total / samples:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
