"""Functions of the libEnsemble design's user-flow test, in a module the endpoint's workers can import."""

from __future__ import annotations

import os
import uuid


def my_remote_func(marker_dir: str) -> str:
    """Leave one file in ``marker_dir`` (the ``app_args`` string) and return its name."""
    name = f"{os.getpid()}-{uuid.uuid4().hex}"
    with open(os.path.join(marker_dir, name), "w") as fh:
        fh.write(marker_dir)
    return name
