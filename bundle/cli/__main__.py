"""``python -m bundle.cli``: the ``libe-gc`` command."""

from bundle.cli.commands import main

main()
