"""``python -m xtuner`` is the ``xtuner`` command."""
from xtuner.entry_point import cli

cli()
