"""The HTML report of a run, or of several runs side by side (issue 8). See :mod:`thinktune.report.build`."""
