"""``python -m idfzip`` runs the command line."""

from .cli import run

run()
