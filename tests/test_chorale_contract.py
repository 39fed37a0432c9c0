"""The chorale contract (engine/chorale/contract.py): the live networks see in the engine
exactly what they saw in training, and the shared pieces do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from kantor.engine.chorale.contract import (
    allowed_tokens,
    gumbel_noise,
    live_hidden,
    live_inputs,
    log_softmax,
    sample,
)
from kantor.engine.chorale.encoding import (
    END,
    FIRST_PITCH_TOKEN,
    HOLD,
    LIVE_DECISION_ORDER,
    MASK,
    META_FIELDS,
    REST,
    START,
    VoiceVocabulary,
)
from kantor.engine.chorale.live import LiveHarmonizer


def random_rows(h: LiveHarmonizer, rng: np.random.Generator, n: int = 3) -> np.ndarray:
    rows = np.empty((n, 4, h.window), dtype=np.int64)
    for v, vocab in enumerate(h.vocabularies):
        rows[:, v] = rng.integers(REST, vocab.size, (n, h.window))
    return rows


@pytest.mark.parametrize("ahead", [0, 1, 3, 7])  # 7: the most a melody 8 steps early shows
def test_the_engine_feeds_the_live_networks_the_training_masks(ahead):
    torch = pytest.importorskip("torch")
    from kantor.export.chorale.model import LiveModel, LiveNetConfig

    h = LiveHarmonizer.load()
    h.prepare()
    h.clock_running, h.settings.lookahead = ahead > 0, ahead + 1  # early by ahead + 1
    fed = {v: [] for v in LIVE_DECISION_ORDER}
    for voice in LIVE_DECISION_ORDER:  # record what the engine gives ONNX Runtime
        model = h.models[voice]

        def recording(feeds, model=model, voice=voice):
            fed[voice].append(feeds["tokens"].copy())
            return type(model).run(model, feeds)

        model.run = recording
    rng = np.random.default_rng(ahead)
    rows = random_rows(h, rng)
    metas = np.zeros((rows.shape[0], h.window, len(META_FIELDS)), dtype=np.int64)
    for _ in h._answer(rows, metas, {}, None):
        pass  # rows now hold the engine's decisions at the step, as training's targets do

    config = LiveNetConfig(past=h.past, lookahead=h.max_lookahead, token_embed=2, step_dim=2,
                           hidden=2, dropout=0.0)
    live = LiveModel([v.size for v in h.vocabularies], config)
    seen = {}
    for voice in LIVE_DECISION_ORDER:
        live.voice_net(voice).register_forward_pre_hook(
            lambda net, args: seen.__setitem__(net.voice, args[0].numpy().copy()))
    live(torch.from_numpy(rows), torch.zeros((rows.shape[0], h.window, 8), dtype=torch.long),
         lookahead=torch.full((rows.shape[0],), ahead))
    for voice in LIVE_DECISION_ORDER:
        assert len(fed[voice]) == 1
        np.testing.assert_array_equal(fed[voice][0], seen[voice])


def test_live_hidden_shows_the_past_the_decided_voices_and_the_lookahead():
    hidden = live_hidden(window=6, past=3, decided=(3,), ahead=1)
    assert not hidden[:, :3].any()  # the past of every voice
    assert not hidden[0, :5].any() and hidden[0, 5]  # the soprano up to one step ahead
    assert not hidden[3, 3] and hidden[3, 4:].all()  # the bass, decided, at the step only
    assert hidden[1:3, 3:].all()  # alto and tenor not yet
    rows = np.arange(2 * 4 * 6).reshape(2, 4, 6) + 10
    seen = live_inputs(rows, hidden)
    assert (seen[:, hidden] == MASK).all() and (seen[:, ~hidden] == rows[:, ~hidden]).all()


def test_log_softmax_and_sampling():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, -np.inf]])
    logp = log_softmax(logits)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0)
    assert logp[1, 2] == -np.inf
    rng = np.random.default_rng(0)
    draws = np.array([sample(logp, rng) for _ in range(4000)])
    assert (draws[:, 1] != 2).all()  # -inf is never drawn
    share = np.bincount(draws[:, 0], minlength=3) / 4000
    np.testing.assert_allclose(share, np.exp(logp[0]), atol=0.03)
    assert gumbel_noise(np.random.default_rng(1), (2, 3)).shape == (2, 3)


def test_allowed_tokens_and_pitch_arithmetic():
    vocab = VoiceVocabulary("bass", 36, 64)
    ok = allowed_tokens(vocab.token_pitches(), 40, 50)
    assert ok[REST] and ok[HOLD] and not ok[[START, END, MASK]].any()
    assert ok.sum() == 2 + 11 and ok[vocab.token_of_pitch(40)] and not ok[vocab.token_of_pitch(51)]
    pitches = np.array([36, 50, 64])
    tokens = vocab.tokens_of_pitches(pitches)
    assert tokens[0] == FIRST_PITCH_TOKEN
    assert [vocab.pitch_of_token(int(t)) for t in tokens] == pitches.tolist()
