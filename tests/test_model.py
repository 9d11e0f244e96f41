"""Unit tests of the DMD core: shapes for every preset, determinism, the padding/mask rules, classification,
the BERT text path, gradient coverage, official-weight loading and the config round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmd_pipeline.config import PRESETS, DMDConfig, get_preset
from dmd_pipeline.errors import ConfigError, InputError, ModelFileError
from dmd_pipeline.models import DMDSystem, load_official_state_dict
from dmd_pipeline.models.transformer import causal_mask, positional_embedding, sinusoidal_table

torch.set_num_threads(1)


def _inputs(cfg: DMDConfig, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    (lt, la, lv), (dt, da, dv) = cfg.seq_lens, cfg.feature_dims
    return (
        torch.randn(b, lt, dt, generator=g),
        torch.randn(b, la, da, generator=g),
        torch.randn(b, lv, dv, generator=g),
    )


def _small(name: str = "mosei_aligned", **kw: object) -> DMDConfig:
    return get_preset(name, **kw)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shapes_every_preset(name: str) -> None:
    cfg = get_preset(name)
    torch.manual_seed(0)
    system = DMDSystem(cfg).eval()
    b, d = 2, cfg.dst_feature_dim
    text, audio, vision = _inputs(cfg, b)
    with torch.no_grad():
        out = system(text, audio, vision)
    tl, ta, tv = cfg.t_prime
    if name.endswith("unaligned"):
        assert len({ta, tv, tl}) == 3  # unequal lengths exercise the causal-mask offset
    assert out["output_logit"].shape == (b, cfg.num_classes)
    for m, t in (("l", tl), ("a", ta), ("v", tv)):
        assert out[f"s_{m}"].shape == (t, b, d) and out[f"c_{m}"].shape == (t, b, d)
        assert out[f"origin_{m}"].shape == (b, d, t) == out[f"recon_{m}"].shape == out[f"s_{m}_r"].shape
        assert out[f"repr_{m}_homo"].shape == (b, d) and out[f"repr_{m}_hetero"].shape == (b, 2 * d)
        assert out[f"last_h_{m}"].shape == (b, 2 * d) and out[f"c_{m}_sim"].shape == (b, d)
    for kind in ("homo", "hetero"):
        e = out[f"edges_{kind}"]
        assert e.shape == (6, b) and torch.allclose(e.sum(0), torch.ones(b))
        assert out[f"edges_origin_{kind}"].shape == (6, 1)
    assert torch.isfinite(out["output_logit"]).all()
    assert torch.allclose(system.predict(text, audio, vision), out["output_logit"], atol=1e-6)


def test_determinism_under_seed() -> None:
    cfg = _small()
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        system = DMDSystem(cfg).train()
        out = system(*_inputs(cfg))
        loss = system.losses(out, torch.tensor([[0.5], [-1.0]]))["total"]
        outs.append((out["output_logit"].detach(), loss.detach()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_positional_embedding_padding_rule() -> None:
    x = torch.randn(2, 7, 10)
    x[1, 4:, 0] = 0.0  # trailing padding in sample 1 (first channel exactly zero)
    x[0, 2, 0] = 0.0  # a zero first channel mid-sequence also gets position 0
    pe = positional_embedding(x)
    assert torch.all(pe[1, 4:] == 0) and torch.all(pe[0, 2] == 0)
    # other steps keep their 1-based position (no renumbering), sin half first
    half = 5
    freq = torch.exp(-torch.arange(half, dtype=torch.float64) * torch.log(torch.tensor(1e4)) / (half - 1))
    for b, t in ((0, 0), (0, 3), (1, 3)):
        ang = (t + 1) * freq
        want = torch.cat([torch.sin(ang), torch.cos(ang)]).float()
        assert torch.allclose(pe[b, t], want, atol=1e-6)
    assert torch.all(sinusoidal_table(4, 7)[:, -1] == 0)  # odd width: zero last column


def test_padding_changes_model_output_via_pe() -> None:
    cfg = _small()
    torch.manual_seed(0)
    system = DMDSystem(cfg).eval()
    text, audio, vision = _inputs(cfg)
    audio[1, 42:] = 0.0
    vision[1, 42:] = 0.0
    with torch.no_grad():
        out = system(text, audio, vision)
    # kernel-1 audio conv: padded steps give exactly zero s_a/c_a, which the PE rule maps to position 0
    assert torch.all(out["s_a"][42:, 1] == 0)
    assert torch.isfinite(out["output_logit"]).all()


def test_causal_mask_rule() -> None:
    m = causal_mask(3, 5, torch.device("cpu"))  # |Tk - Tq| = 2
    assert m[0].tolist() == [True, True, True, False, False]
    assert m[-1].all()  # the last query sees every key
    assert causal_mask(4, 4, torch.device("cpu")).equal(torch.ones(4, 4, dtype=torch.bool).tril())


def test_classification_head() -> None:
    cfg = _small(num_classes=3)
    torch.manual_seed(0)
    system = DMDSystem(cfg).train()
    out = system(*_inputs(cfg, b=4))
    assert out["output_logit"].shape == (4, 3) and out["logits_l_homo"].shape == (4, 3)
    lo = system.losses(out, torch.tensor([0, 1, 2, 1]))
    assert torch.isfinite(lo["total"]) and lo["mar"] >= 0
    lo["total"].backward()
    assert system.homo_gd.W_logit.weight.grad is not None
    assert system.homo_gd.W_logit.weight.shape == (cfg.gd_size_homo, 3)


@pytest.mark.slow  # ~5 s, mostly importing transformers
def test_text_encoder_path_tiny_bert() -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    cfg = _small(use_bert=True, feature_dims=(32, 74, 35))
    system = DMDSystem(cfg, text_encoder=bert).train()
    b, lt = 2, cfg.seq_lens[0]
    ids = torch.randint(1, 50, (b, lt))
    text = torch.stack(
        [ids, torch.ones(b, lt, dtype=torch.long), torch.zeros(b, lt, dtype=torch.long)], dim=1
    )
    _, audio, vision = _inputs(cfg, b)
    out = system(text, audio, vision)
    assert out["output_logit"].shape == (b, cfg.num_classes)
    system.losses(out, torch.zeros(b, 1))["total"].backward()
    assert bert.embeddings.word_embeddings.weight.grad is not None
    with pytest.raises(ConfigError):
        DMDSystem(_small(use_bert=True, feature_dims=(768, 74, 35)), text_encoder=bert)


def test_every_live_parameter_gets_a_gradient() -> None:
    cfg = _small()
    torch.manual_seed(0)
    system = DMDSystem(cfg).train()
    text, audio, vision = _inputs(cfg, b=4)
    out = system(text, audio, vision)
    system.losses(out, torch.tensor([[1.2], [-0.6], [1.2], [2.4]]))["total"].backward()
    for name, p in system.named_parameters():
        if "proj_cosine_" in name:
            assert p.grad is None, name  # documented dead layers
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            if not name.endswith("gd.W_logit.bias") and not name.endswith(("W_repr.bias", "W_edge.bias")):
                assert p.grad.abs().sum() > 0, name


def test_drop_dead_layers_and_load_official_names() -> None:
    cfg = _small()
    torch.manual_seed(0)
    full = DMDSystem(cfg).eval()
    lean = DMDSystem(get_preset("mosei_aligned", keep_dead_layers=False)).eval()
    dead = sum(p.numel() for n, p in full.model.named_parameters() if n.startswith("proj_cosine_"))
    assert dead > 0
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in lean.parameters()) == dead
    # un-prefixed official DMD state_dict (as the authors release it) + the official no-op buffers
    state = dict(full.model.state_dict())
    state["trans_l_mem.version"] = torch.tensor([2.0])
    state["trans_l_mem.embed_positions._float_tensor"] = torch.zeros(1)
    info = load_official_state_dict(lean, state)
    assert "trans_l_mem.version" in info["ignored"]
    inputs = _inputs(cfg)
    with torch.no_grad():
        assert torch.allclose(full(*inputs)["output_logit"], lean(*inputs)["output_logit"])
    assert "proj_s_l" not in lean.model(*inputs)


def test_load_official_errors_name_keys() -> None:
    system = DMDSystem(_small())
    state = {"model." + k: v for k, v in system.model.state_dict().items()}
    state.update({"kernel_homo." + k: v for k, v in system.homo_gd.state_dict().items()})
    state.update({"kernel_hetero." + k: v for k, v in system.hetero_gd.state_dict().items()})
    load_official_state_dict(system, state)
    bad = dict(state)
    del bad["model.out_layer.bias"]
    with pytest.raises(ModelFileError, match="out_layer.bias"):
        load_official_state_dict(system, bad)
    bad = dict(state, **{"model.not_a_layer.weight": torch.zeros(1)})
    with pytest.raises(ModelFileError, match="not_a_layer"):
        load_official_state_dict(system, bad)
    bad = dict(state, **{"model.out_layer.bias": torch.zeros(2)})
    with pytest.raises(ModelFileError, match="shape mismatch"):
        load_official_state_dict(system, bad)


def test_config_round_trip_and_errors() -> None:
    cfg = get_preset("mosi_aligned", feature_dims=(384, 5, 20), train={"learning_rate": 3e-4})
    again = DMDConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.train["learning_rate"] == 3e-4 and again.train["batch_size"] == 16
    assert PRESETS["mosi_aligned"].feature_dims[0] == 768  # presets are not mutated by overrides
    with pytest.raises(ConfigError):
        get_preset("nope")
    with pytest.raises(ConfigError):
        get_preset("mosi_aligned", ort_variant="other")
    with pytest.raises(ConfigError):
        DMDConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_bad_input_shape_is_input_error() -> None:
    cfg = _small()
    system = DMDSystem(cfg).eval()
    text, audio, vision = _inputs(cfg)
    with pytest.raises(InputError, match="audio"):
        system(text, audio[:, :10], vision)


def test_code_is_device_agnostic() -> None:
    import dmd_pipeline.models as pkg

    for f in Path(pkg.__file__).parent.glob("*.py"):
        src = f.read_text()
        assert ".cuda(" not in src and "'cuda'" not in src and '"cuda"' not in src, f


def test_fast_dropout_distribution() -> None:
    from dmd_pipeline.models.transformer import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.3, training=True)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    assert abs(y.mean().item() - 1.0) < 0.02  # inverted scaling keeps the expectation
    assert torch.equal(dropout(x, 0.3, training=False), x)
