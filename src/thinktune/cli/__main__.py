"""``python -m thinktune.cli`` is the ``thinktune`` CLI (as is ``python -m thinktune``)."""

from thinktune.cli import app

app()
