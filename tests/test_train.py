"""The training step without Ray: sharding, one real epoch, checkpoint round trip."""

from __future__ import annotations

import torch

from hdr_dist import models
from hdr_dist.data import datasets
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import ranks, train


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    n, world = 103, 4
    shards = [ranks.shard(n, r, world, seed=0, epoch=5) for r in range(world)]
    assert {len(s) for s in shards} == {n // world}
    every = torch.cat(shards)
    assert len(set(every.tolist())) == len(every) == world * (n // world)
    assert not torch.equal(ranks.shard(n, 0, world, 0, 5), ranks.shard(n, 0, world, 0, 6))


def test_plain_loop_learns_and_checkpoint_loads_weights_only(tmp_path):
    ds = datasets.load("mnist", limit_train=3000)
    cfg = TrainConfig.from_recipe("cnn", ds, epochs=2, batch_size=64)
    model, history = train.train_plain(cfg, train.arrays_of(ds), torch.device("cpu"))
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["val_acc"] > 0.85  # chance is 0.10
    opt = train.make_optimizer(model, cfg)
    sched = train.make_schedule(opt, cfg, 10)
    checkpoints.save(str(tmp_path), model, opt, sched, cfg, 1, history)
    state = checkpoints.load(tmp_path)  # weights_only=True inside
    assert state["config"]["model"] == "cnn"
    assert state["epoch"] == 1
    assert state["config"]["labels"] == ds.labels
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    assert TrainConfig.from_dict(state["config"]) == cfg


def test_config_takes_the_recipe_and_only_the_settings_given():
    ds = datasets.load("mnist", limit_train=500, limit_test=50)
    cfg = TrainConfig.from_recipe("cnn-seed", ds, lr=0.01, dropout=None, augment=None)
    assert (cfg.lr, cfg.optimizer, cfg.augment, cfg.dropout, cfg.epochs) == (0.01, "rmsprop", False, None, 30)
    assert cfg.labels == tuple(ds.labels)
    assert cfg.num_classes == 10
    try:
        cfg.lr = 1.0
    except AttributeError:
        pass
    else:
        raise AssertionError("a TrainConfig must be frozen")


def test_a_checkpoint_written_before_the_config_dataclass_still_loads(tmp_path):
    """Before TrainConfig, checkpoints stored the config as a hand-built dict, and the oldest
    lacked width and dropout; both still load, as the model they were trained as."""
    ds = datasets.load("mnist", limit_train=500, limit_test=50)
    new = TrainConfig.from_recipe("cnn", ds)
    old = {
        "model": "cnn",
        "arch": "cnn",
        "dataset": ds.name,
        "labels": list(ds.labels),
        "num_classes": 10,
        "mean": ds.mean,
        "std": ds.std,
        "epochs": 12,
        "batch_size": 128,
        "lr": 4e-3,
        "optimizer": "adamw",
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "lr_decay": 0.0,
        "label_smoothing": 0.05,
        "augment": True,
        "rotation": 10.0,
        "shift": 0.1,
        "zoom": 0.1,
        "seed": 0,
        "cpus_per_worker": 1,
        "preprocess": "none",
        "log_progress": True,
        "retired_setting": 1,
    }
    weights = models.from_config(new).state_dict()
    torch.save({"model": weights, "config": old, "history": []}, tmp_path / "model.pt")
    model, cfg = checkpoints.model_from_state(checkpoints.load(tmp_path / "model.pt"))
    assert (cfg.width, cfg.dropout, cfg.labels) == (1.0, None, tuple(ds.labels))
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    state, cfg, path = checkpoints.for_scoring(str(tmp_path), None)  # what `hdr score --model` does
    assert cfg.model == "cnn"
    assert path == str(tmp_path / "model.pt")
    assert state.params > 0
    # An lstm of before issue 17 read one row a step, where the recipe now reads two.
    lstm = old | {"model": "lstm", "arch": "lstm"}
    weights = models.build("lstm", 10, rows_per_step=1).state_dict()
    torch.save({"model": weights, "config": lstm, "history": []}, tmp_path / "model.pt")
    model, cfg = checkpoints.model_from_state(checkpoints.load(tmp_path / "model.pt"))
    assert cfg.rows_per_step == 1
    assert model.steps == 28
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_the_training_step_runs_alone_without_ray():
    """``python -m hdr_dist.train`` is what a GPU machine without Ray runs: the whole data set on
    the device, the same epoch code. CI has no GPU, so the device here is the CPU."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hdr_dist.train",
            "--model",
            "cnn",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--limit-train",
            "2000",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "[cnn] epoch 2/2 done" in done.stderr
    val_acc = float(
        done.stderr.split("epoch 2/2 done")[1].split("val loss")[1].split("acc ")[1].split("%")[0]
    )
    assert val_acc > 80  # chance is 10
