"""The training step without Ray: sharding, one real epoch, checkpoint round trip."""

from __future__ import annotations

import torch

from hdr_dist import data, train


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    n, world = 103, 4
    shards = [train.shard(n, r, world, seed=0, epoch=5) for r in range(world)]
    assert {len(s) for s in shards} == {n // world}
    every = torch.cat(shards)
    assert len(set(every.tolist())) == len(every) == world * (n // world)
    assert not torch.equal(train.shard(n, 0, world, 0, 5), train.shard(n, 0, world, 0, 6))


def test_plain_loop_learns_and_checkpoint_loads_weights_only(tmp_path):
    ds = data.load("mnist", limit_train=3000)
    cfg = train.config("cnn", ds, epochs=2, batch_size=64)
    model, history = train.train_plain(cfg, train.arrays_of(ds), torch.device("cpu"))
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["val_acc"] > 0.85  # chance is 0.10
    opt = train.make_optimizer(model, cfg)
    sched = train.make_schedule(opt, cfg, 10)
    train.save_checkpoint(str(tmp_path), model, opt, sched, cfg, 1, history)
    state = train.load_checkpoint(tmp_path)  # weights_only=True inside
    assert state["config"]["model"] == "cnn" and state["epoch"] == 1
    assert state["config"]["labels"] == ds.labels
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
