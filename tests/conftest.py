"""Shared fixtures: the shipped sampler and one tiny training run per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from kantor.engine.chorale.gibbs import ChoraleSampler


@pytest.fixture(scope="session")
def sampler() -> ChoraleSampler:
    """The shipped chorale models, loaded and verified once."""
    return ChoraleSampler.load()


@pytest.fixture(scope="session")
def tiny_corpus():
    """The first 12 corpus files, parsed (cached under .cache/chorales)."""
    from kantor.export.chorale.corpus import load_corpus

    return load_corpus(limit=12)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_corpus) -> Path:
    """Train the tiny preset, export it and write its cards: the whole pipeline."""
    pytest.importorskip("torch")
    from kantor.export.chorale.pipeline import train_and_export

    root = tmp_path_factory.mktemp("tiny")
    train_and_export("tiny", root / "run", root / "models", eval_limit=1)
    return root
