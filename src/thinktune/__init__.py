"""thinktune: build custom reasoning models and prove the reasoning is real."""

__version__ = "0.1.0"
