"""Human feedback: a local labelling page for preference judgements (``thinktune label``), its durable store, and
the sources of what people label. Labels become preference pairs in data/labels.py."""
