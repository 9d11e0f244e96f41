"""DMD options that pool time (``DMDConfig.head``: attention / statistics pooling over the real positions
instead of flattening them) and the learned softmax-weighted sum over stacked audio layers
(``DMDConfig.audio_layers``), on tiny models: shapes, gradients, masking of padded frames, the checkpoint,
and the official presets unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmd_pipeline.config import PRESETS, DMDConfig, get_preset
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.models import DMDSystem

torch.set_num_threads(1)


def _tiny(**kw: object) -> DMDConfig:
    base = dict(
        feature_dims=(12, 16, 8),
        seq_lens=(8, 20, 8),
        dst_feature_dim=8,
        nheads=2,
        nlevels=1,
        conv1d_kernel_size=(3, 3, 3),
        num_classes=4,
    )
    return get_preset("mosi_unaligned", **{**base, **kw})


def _inputs(
    cfg: DMDConfig, b: int = 3, audio_len: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    (lt, la, lv), (dt, da, dv) = cfg.seq_lens, cfg.feature_dims
    audio = torch.randn(b, la, da, generator=g)
    if audio_len is not None:
        audio[:, audio_len:] = 0.0  # zero padding at the end, as model_input.to_model_inputs does
    return torch.randn(b, lt, dt, generator=g), audio, torch.randn(b, lv, dv, generator=g)


def test_official_presets_keep_the_flattening_head() -> None:
    for name in PRESETS:
        cfg = get_preset(name)
        assert (cfg.head, cfg.audio_layers) == ("flatten", 1)
        keys = DMDSystem(cfg).state_dict().keys()
        assert not any("pool_" in k or "audio_layer_weights" in k for k in keys)
    assert (
        DMDConfig.from_dict(
            {k: v for k, v in get_preset("mosi_aligned").to_dict().items() if k != "head"}
        ).head
        == "flatten"
    )


@pytest.mark.parametrize("head", ["attention", "stats"])
def test_pooling_heads_shapes_gradients_and_size(head: str) -> None:
    cfg = _tiny(head=head)
    torch.manual_seed(0)
    system = DMDSystem(cfg).train()
    b, d = 3, cfg.dst_feature_dim
    text, audio, vision = _inputs(cfg, b, audio_len=11)
    out = system(text, audio, vision)
    assert out["output_logit"].shape == (b, 4)
    for m in ("l", "a", "v"):
        assert out[f"repr_{m}_homo"].shape == (b, d) and out[f"c_{m}_sim"].shape == (b, d)
        assert out[f"logits_{m}_homo"].shape == (b, 4)
    width = d if head == "attention" else 2 * d
    assert system.model.proj1_a_low.in_features == width and system.model.align_c_l.in_features == width
    system.losses(out, torch.tensor([0, 1, 3]))["total"].backward()
    for name, p in system.named_parameters():
        if "proj_cosine_" not in name:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    if head == "attention":
        assert system.model.pool_a_low.weight.grad.abs().sum() > 0
    n = sum(p.numel() for p in system.parameters())
    assert cfg.estimated_parameters() >= n
    assert DMDConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("head", ["attention", "stats"])
def test_padded_frames_are_masked(head: str) -> None:
    """A clip of 11 real audio frames zero-padded to 20 gets the same homo outputs as the same 11 frames in
    a model whose audio length is 11: the pooled heads have no position-specific weights, so both share
    every parameter, and the padded positions must not count."""
    torch.manual_seed(0)
    long_sys = DMDSystem(_tiny(head=head)).eval()
    short_sys = DMDSystem(_tiny(head=head, seq_lens=(8, 11, 8))).eval()
    short_sys.load_state_dict(long_sys.state_dict())
    text, audio, vision = _inputs(long_sys.config, audio_len=11)
    with torch.no_grad():
        a = long_sys(text, audio, vision)
        b = short_sys(text, audio[:, :11], vision)
    for key in ("logits_a_homo", "repr_a_homo", "c_a_sim"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    # without the mask the padded positions would count: pooling all 18 positions gives another answer
    model = long_sys.model
    c_a = a["c_a"].transpose(0, 1)
    everything = {"a": torch.ones(3, model.t_prime["a"], dtype=torch.bool)}
    masked = model._masks(text, audio, vision)
    assert masked["a"].sum(1).tolist() == [9, 9, 9]  # 11 real frames, kernel 3
    assert not torch.allclose(
        model._summary("a", c_a, everything), model._summary("a", c_a, masked), atol=1e-4
    )


def test_learned_layer_weights_input() -> None:
    cfg = _tiny(feature_dims=(12, 7 * 6, 8), audio_layers=7, head="stats")
    torch.manual_seed(0)
    system = DMDSystem(cfg).train()
    model = system.model
    assert model.proj_a.in_channels == 6
    assert "model.audio_layer_weights" in system.state_dict()
    assert torch.allclose(model.layer_weights(), torch.full((7,), 1 / 7))
    text, audio, vision = _inputs(cfg, audio_len=15)
    out = system(text, audio, vision)
    system.losses(out, torch.tensor([0, 2, 1]))["total"].backward()
    assert model.audio_layer_weights.grad is not None and model.audio_layer_weights.grad.abs().sum() > 0
    # the mix is the softmax-weighted sum of the per-layer normalised layers; padded frames stay zero
    with torch.no_grad():
        model.audio_layer_weights.copy_(torch.arange(7.0))
        mixed = model._mix_layers(audio)
        layers = torch.nn.functional.layer_norm(audio.reshape(3, 20, 7, 6), (6,))
        want = (layers * torch.softmax(torch.arange(7.0), 0)[:, None]).sum(2)
    assert torch.allclose(mixed, want, atol=1e-6) and (mixed[:, 15:] == 0).all()
    assert abs(float(model.layer_weights().sum()) - 1.0) < 1e-6 and model.layer_weights()[-1] > 0.5


def test_checkpoint_round_trip_keeps_head_and_layer_weights(tmp_path: Path) -> None:
    from dmd_pipeline.models.checkpoint import load_checkpoint, save_checkpoint

    cfg = _tiny(feature_dims=(12, 7 * 6, 8), audio_layers=7, head="attention")
    torch.manual_seed(0)
    system = DMDSystem(cfg).eval()
    with torch.no_grad():
        system.model.audio_layer_weights.copy_(torch.linspace(-1, 1, 7))
    save_checkpoint(tmp_path / "m", system)
    back, _ = load_checkpoint(tmp_path / "m")
    assert back.config.head == "attention" and back.config.audio_layers == 7
    assert torch.allclose(back.model.layer_weights(), system.model.layer_weights())
    x = _inputs(cfg, audio_len=13)
    assert torch.allclose(back.predict(*x), system.predict(*x), atol=1e-6)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="head must be one of"):
        _tiny(head="mean")
    with pytest.raises(ConfigError, match="does not divide"):
        _tiny(audio_layers=7)
    with pytest.raises(ConfigError, match="audio_layers"):
        _tiny(audio_layers=0)
