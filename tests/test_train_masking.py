"""What the chorale trainer shows its networks: orderless masking (Coconet-style)."""

import pytest

torch = pytest.importorskip("torch")

from kantor.engine.chorale.encoding import MASK  # noqa: E402
from kantor.export.chorale.train import mask_context  # noqa: E402


def windows(batch: int = 4000, width: int = 9) -> torch.Tensor:
    return torch.randint(5, 40, (batch, 4, width))


def test_orderless_masking_hides_lower_voices_only_in_its_share_of_windows():
    tokens = windows()
    before = tokens.clone()
    masked = mask_context(tokens, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, before)  # the batch itself is left alone
    hidden = masked == MASK
    assert not hidden[:, 0].any()  # the soprano, which the user gives, is always seen
    touched = hidden.flatten(1).any(1).float().mean().item()
    assert 0.45 < touched < 0.55  # about half the windows
    # Where a window is masked, the depth is uniform: on average half its lower notes.
    depth = hidden[:, 1:].flatten(1).float().mean(1)
    assert 0.4 < depth[depth > 0].mean().item() < 0.6
    assert torch.equal(masked[~hidden], tokens[~hidden])  # nothing else changes


def test_no_masking_when_the_share_is_zero():
    tokens = windows(100)
    assert mask_context(tokens, 0.0, torch.Generator().manual_seed(0)) is tokens
