"""Decoding-time interventions: the thought-switching penalty (``tip``) and activation steering (``steering``)."""
