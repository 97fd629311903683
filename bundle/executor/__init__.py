"""libEnsemble's executor interface on Globus Compute endpoints: :class:`GlobusComputeExecutor`."""

from bundle.executor.executor import GlobusComputeExecutor
from bundle.executor.task import GlobusComputeTask

__all__ = ["GlobusComputeExecutor", "GlobusComputeTask"]
