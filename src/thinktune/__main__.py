"""``python -m thinktune`` is the ``thinktune`` CLI."""

from thinktune.cli import app

app()
