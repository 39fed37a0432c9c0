"""The shared training loop (export/trainer.py) on a tiny linear model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from kantor.export.trainer import Run, fit, shard  # noqa: E402


def tiny_run(counter: dict, stop_after: int) -> Run:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    data = torch.randn(40, 3), torch.randn(40, 1)

    def batches(epoch, rng):
        order = torch.from_numpy(rng.permutation(40))
        for i in range(0, 40, 8):
            yield data[0][order[i:i + 8]], data[1][order[i:i + 8]]

    def after_step():
        counter["steps"] += 1

    return Run(name="tiny", net=net, config={"tiny": 1}, epochs=10, batches=batches,
               loss=lambda n, part: torch.nn.functional.mse_loss(n(part[0]), part[1]),
               steps_per_epoch=5, after_step=after_step,
               done=lambda: counter["steps"] >= stop_after,
               extra_state=lambda: dict(counter), load_extra_state=counter.update)


def test_a_run_stops_when_done_and_a_finished_run_takes_no_more_steps(tmp_path):
    counter = {"steps": 0}
    net, record = fit(tiny_run(counter, stop_after=7), tmp_path)
    assert counter["steps"] == 7 and len(record["epochs"]) == 2  # 5 steps, then 2
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    again = {"steps": 0}
    resumed, _ = fit(tiny_run(again, stop_after=7), tmp_path)  # its clock comes back
    assert again["steps"] == 7
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, weights[name])


def test_shards_cover_the_batch_and_weigh_it_exactly():
    batch = (torch.arange(10), torch.arange(10) * 2)
    parts = [shard(batch, rank, 3) for rank in range(3)]
    assert torch.equal(torch.cat([p[0][0] for p in parts]), batch[0])
    assert sum(weight for _, weight in parts) == pytest.approx(3.0)
