"""Trainer: learning on synthetic MMSA data, gradients, GD edges, accumulation, early stopping, checkpoints."""

from __future__ import annotations

import pytest
import torch
from make_synthetic_mmsa import make_splits, tiny_config

from dmd_pipeline.data.datasets import dataset_from_split
from dmd_pipeline.data.mmsa import sanitize_split
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.models import DMDSystem
from dmd_pipeline.models.checkpoint import load_checkpoint
from dmd_pipeline.training.trainer import (
    TrainConfig,
    Trainer,
    evaluate,
    param_groups,
    predict_dataset,
    set_seed,
)

torch.set_num_threads(1)


def _data(n_train: int = 24, n_valid: int = 8, **cfg_kw):
    cfg = tiny_config(**cfg_kw)
    splits = {k: sanitize_split(v) for k, v in make_splits(n_train, n_valid, 4, seed=1).items()}
    return (
        cfg,
        dataset_from_split(cfg, splits["train"], "train"),
        dataset_from_split(cfg, splits["valid"], "valid"),
    )


def _tcfg(cfg, **kw) -> TrainConfig:
    base = dict(
        batch_size=8, update_epochs=1, learning_rate=3e-3, max_epochs=6, early_stop=50, quiet=True, seed=5
    )
    return TrainConfig.from_model_config(cfg, **{**base, **kw})


def test_train_config_defaults_follow_the_preset():
    cfg = tiny_config()
    t = TrainConfig.from_model_config(cfg)
    assert (t.learning_rate, t.batch_size, t.update_epochs, t.grad_clip) == (1e-4, 16, 10, 0.6)
    assert (t.early_stop, t.patience, t.lr_factor, t.key_eval) == (10, 5, 0.5, "Loss")
    assert t.weight_decay == cfg.train["weight_decay"] and not t.apply_weight_decay
    assert TrainConfig.from_model_config(cfg, batch_size=None).batch_size == 16  # None = keep preset
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_model_config(cfg, bogus=1)


def test_every_learning_parameter_gets_a_gradient():
    cfg, train, _ = _data()
    set_seed(0)
    system = DMDSystem(cfg).train()
    batch = [
        torch.stack([train[i][k] for i in range(7)]) for k in range(4)
    ]  # odd batch: L1 signs can't cancel
    system.losses(system(*batch[:3]), batch[3])["total"].backward()
    dead = {n for n, _ in system.named_parameters() if "proj_cosine" in n}
    assert len(dead) == 6  # documented dead layers (fixture README: no gradient at all)
    for name, p in system.named_parameters():
        if name in dead:
            assert p.grad is None, name
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        if not (name.endswith(".bias") and "_gd." in name):  # GD kernel biases cancel in the softmax
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


NO_DROPOUT = dict(
    text_dropout=0.0, output_dropout=0.0, embed_dropout=0.0, attn_dropout=0.0, attn_dropout_a=0.0
)


@pytest.mark.slow  # ~3 s alone, more on a loaded machine
def test_training_lowers_the_loss_and_moves_gd_edges(tmp_path):
    # 24 random samples do not generalise, so the epoch is selected on the training set itself here
    cfg, train, _ = _data(**NO_DROPOUT)
    valid = train
    set_seed(0)
    system = DMDSystem(cfg)
    before_loss = evaluate(system, train)["Loss"]
    edge_before = {n: p.detach().clone() for n, p in system.named_parameters() if "W_edge" in n}
    assert len(edge_before) == 4  # weight + bias of both GD kernels
    tcfg = _tcfg(cfg, max_epochs=8, learning_rate=1e-2)
    result = Trainer(system, tcfg).fit(train, valid, checkpoint_dir=tmp_path / "run")
    after_loss = evaluate(system, train)["Loss"]
    assert after_loss < 0.75 * before_loss, (before_loss, after_loss)
    assert result.history[-1].train_loss < result.history[0].train_loss
    moved = {
        n: float((p.detach() - edge_before[n]).abs().max())
        for n, p in system.named_parameters()
        if n in edge_before
    }
    assert moved["homo_gd.W_edge.weight"] > 1e-4 and moved["hetero_gd.W_edge.weight"] > 1e-4, moved
    # the best epoch's weights are what the system holds at the end, and what the checkpoint holds
    assert evaluate(system, valid)["Loss"] == pytest.approx(result.best_metrics["Loss"], abs=1e-6)
    loaded, meta = load_checkpoint(tmp_path / "run")
    assert meta["best_epoch"] == result.best_epoch
    p1, _, _ = predict_dataset(system, valid)
    p2, _, _ = predict_dataset(loaded, valid)
    assert (p1 == p2).all()
    assert (tmp_path / "run" / "history.json").is_file()


def test_deterministic_under_a_seed():
    states = []
    for _ in range(2):
        cfg, train, valid = _data(n_train=16)
        set_seed(0)
        system = DMDSystem(cfg)
        Trainer(system, _tcfg(cfg, max_epochs=2)).fit(train, valid)
        states.append(system.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_gradient_accumulation_steps():
    cfg, train, valid = _data(n_train=24)  # 3 batches of 8
    system = DMDSystem(cfg)
    rec = Trainer(system, _tcfg(cfg, update_epochs=2, max_epochs=1)).fit(train, valid).history[0]
    assert rec.optimizer_steps == 2  # one full group of 2 + the partial group
    rec = Trainer(system, _tcfg(cfg, update_epochs=2, max_epochs=1, step_partial_group=False)).fit(
        train, valid
    )
    assert rec.history[0].optimizer_steps == 1  # the official loop drops the partial group


def test_grad_clip_value_and_off(monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_value_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", lambda p, v: calls.append(v) or real(p, v))
    cfg, train, valid = _data(n_train=16)
    Trainer(DMDSystem(cfg), _tcfg(cfg, max_epochs=1, grad_clip=0.6)).fit(train, valid)
    assert calls == [0.6, 0.6]  # after every backward
    calls.clear()
    Trainer(DMDSystem(cfg), _tcfg(cfg, max_epochs=1, grad_clip=-1.0)).fit(train, valid)
    assert calls == []


def test_early_stopping_and_plateau():
    cfg, train, valid = _data(n_train=8)
    system = DMDSystem(cfg)
    result = Trainer(system, _tcfg(cfg, learning_rate=0.0, early_stop=2, max_epochs=20)).fit(train, valid)
    assert result.stopped_early and result.best_epoch == 1 and result.epochs_run == 3
    assert all(not h.improved for h in result.history[1:])


def test_crash_keeps_the_best_checkpoint(tmp_path):
    cfg, train, valid = _data(n_train=8)
    system = DMDSystem(cfg)

    def boom(rec):
        if rec.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(system, _tcfg(cfg, max_epochs=5)).fit(
            train, valid, checkpoint_dir=tmp_path / "r", on_epoch_end=boom
        )
    loaded, meta = load_checkpoint(tmp_path / "r")
    assert meta["best_epoch"] in (1, 2) and "valid" in meta["metrics"]
    assert not list((tmp_path / "r").glob("*.tmp"))


@pytest.mark.slow  # importing transformers' BertModel takes ~7 s here
def test_text_encoder_gets_its_own_param_group():
    transformers = pytest.importorskip("transformers")
    from dmd_pipeline.models.dmd import BertTextEncoder

    bert_cfg = transformers.BertConfig(
        vocab_size=2100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    cfg = tiny_config(use_bert=True, text_encoder="unused")
    system = DMDSystem(cfg, text_encoder=BertTextEncoder(transformers.BertModel(bert_cfg)))
    t = TrainConfig.from_model_config(cfg, apply_weight_decay=True)
    groups = param_groups(system, t)
    assert [g["name"] for g in groups] == ["dmd", "text_encoder"]
    assert groups[1]["lr"] == t.learning_rate_bert and groups[1]["weight_decay"] == t.weight_decay_bert
    assert groups[0]["lr"] == t.learning_rate and groups[0]["weight_decay"] == t.weight_decay
    n_enc = sum(p.numel() for p in groups[1]["params"])
    assert n_enc == sum(p.numel() for p in system.model.text_model.parameters())
    assert (
        param_groups(system, TrainConfig.from_model_config(cfg))[0]["weight_decay"] == 0.0
    )  # official: none
