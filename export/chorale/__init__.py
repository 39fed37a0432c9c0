"""Chorale corpus, DeepBach voice networks, training and export."""
