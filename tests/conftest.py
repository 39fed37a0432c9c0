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


@pytest.fixture(scope="session")
def jack_server():
    """A real JACK server (dummy driver, 1024-frame periods) under a unique name; clients
    in this process find it through JACK_DEFAULT_SERVER."""
    import os
    import uuid

    from kantor.bridges.jack import JackServer, JackServerError

    server = JackServer(f"kantor-test-{uuid.uuid4().hex[:8]}")
    try:
        server.start()
    except JackServerError as error:
        pytest.fail(f"{error} (`make test` installs jackd2 as root)")
    previous = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    server.point_here()
    yield server.name
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="session")
def festival_corpus(tmp_path_factory) -> Path:
    """A small corpus made as the corpus builder makes it: 10 training and 2 held-out
    sentences from the installed text sources, rendered by Festival's HTS voice (ID.wav
    32 kHz + ID.lab + sentences.tsv)."""
    import shutil

    if shutil.which("festival") is None:
        pytest.fail("festival is not installed (Debian festival + festvox-us-slt-hts; "
                    "`make test` installs them as root)")
    from kantor.export.speech.festival import choose_sentences, render

    folder = tmp_path_factory.mktemp("festival")
    render(choose_sentences(10, 2), folder, workers=1)
    return folder


@pytest.fixture(scope="session")
def festival_features(festival_corpus) -> Path:
    """The small corpus analysed into the feature contract (ID.npz)."""
    from kantor.export.speech.analysis import analyze_corpus

    out = festival_corpus / "features"
    analyze_corpus(festival_corpus, out, workers=1)
    return out
