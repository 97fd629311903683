"""The local endpoint: the real Globus Compute engine, in this process."""

from bundle.endpoints.local.endpoint import LocalEndpoint

__all__ = ["LocalEndpoint"]
