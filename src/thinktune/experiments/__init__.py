"""Experiments: thinktune measured on known effects (issue 9). ``experiments/*.yaml`` → runs → summaries →
``docs/EVIDENCE.md``. See :mod:`thinktune.experiments.spec` for the file format, :mod:`.runner` for running and
stage sharing, :mod:`.table` for the statistics and the generated page."""
