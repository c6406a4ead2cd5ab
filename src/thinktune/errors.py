"""Errors that the CLI reports as a short message and a non-zero exit, never a traceback."""

from __future__ import annotations


class ThinktuneError(Exception):
    """Base class: a user-facing problem with a message that says what to fix."""


class RecipeError(ThinktuneError):
    """An invalid recipe, override, or a file the recipe names that does not exist."""


class RunStateError(ThinktuneError):
    """The run directory disagrees with the recipe (changed inputs without --restart-from, a corrupt manifest)."""


class StageError(ThinktuneError):
    """A stage could not run (empty dataset, failed pre-flight, too many reward failures)."""


class ModelError(ThinktuneError):
    """A model named on the command line could not be found or loaded."""
