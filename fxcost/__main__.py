"""``python -m fxcost`` runs the command line."""

from fxcost.cli import entry

entry()
