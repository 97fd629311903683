"""Endpoints: how the bundle reaches one and what configures it.

The bundled templates and site presets with their schema words, the SDK ``Executor``'s options and
credentials, the check of the endpoint's Python, withdrawing unsent tasks, the session cache of
endpoint executors, and the local endpoint (:mod:`bundle.endpoints.local`).
"""
