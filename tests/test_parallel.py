"""Corpus jobs on local processes and on Ray (export/parallel.py) give the same results:
the same sentences rendered by Festival and analysed, byte for byte."""

from __future__ import annotations

import shutil

import pytest

from kantor.export.parallel import run_jobs


def _square(x: int, y: int) -> int:
    return x * x + y


def test_jobs_give_the_same_results_locally_and_on_ray():
    jobs = [(x, 1) for x in range(20)]
    local = sorted(run_jobs(_square, jobs, workers=2))
    on_ray = sorted(run_jobs(_square, jobs, workers=2, ray_address="local"))
    assert local == on_ray == sorted(x * x + 1 for x in range(20))


def test_the_corpus_renders_and_analyses_the_same_on_ray(festival_corpus, tmp_path):
    from kantor.export.speech.analysis import analyze_corpus
    from kantor.export.speech.festival import read_corpus_index, render

    sentences = {ident: text for ident, _, text in read_corpus_index(festival_corpus)[:3]}
    if shutil.which("festival") is None:
        pytest.fail("festival is not installed")
    assert render(sentences, tmp_path / "ray", workers=2, batch=1, ray_address="local") == 3
    for ident in sentences:
        for suffix in (".wav", ".lab"):
            assert ((tmp_path / "ray" / f"{ident}{suffix}").read_bytes()
                    == (festival_corpus / f"{ident}{suffix}").read_bytes())
    assert analyze_corpus(tmp_path / "ray", tmp_path / "ray-features", workers=2,
                          ray_address="local") == 3
    assert analyze_corpus(tmp_path / "ray", tmp_path / "local-features", workers=2) == 3
    for ident in sentences:
        assert ((tmp_path / "ray-features" / f"{ident}.npz").read_bytes()
                == (tmp_path / "local-features" / f"{ident}.npz").read_bytes())
