"""The ``libe-gc`` command line: the commands, their error printing, ``doctor``, ``smoke`` and ``demo``."""

from bundle.cli.commands import main

__all__ = ["main"]
