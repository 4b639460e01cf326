import math

import pytest
import torch

from robopolicy.nn import (
    ConditionalUnet1D,
    ResNet18GN,
    SpatialSoftmax,
    TimestepEmbedding,
    TransformerBlock,
    TransformerEncoder,
    attention_mask,
    sinusoidal_embedding,
)


def test_sinusoidal_embedding_values_and_per_slot_shape():
    e = sinusoidal_embedding(torch.tensor([0, 3]), 8)
    assert torch.allclose(e[0, :4], torch.zeros(4)) and torch.allclose(e[0, 4:], torch.ones(4))
    # first frequency is 1: sin(3), cos(3)
    assert math.isclose(e[1, 0].item(), math.sin(3), abs_tol=1e-6) and math.isclose(e[1, 4].item(), math.cos(3), abs_tol=1e-6)
    per_slot = sinusoidal_embedding(torch.tensor([[0, 3], [3, 0]]), 8)
    assert per_slot.shape == (2, 2, 8) and torch.equal(per_slot[0, 1], e[1]) and torch.equal(per_slot[1, 1], e[0])
    with pytest.raises(ValueError):
        sinusoidal_embedding(torch.tensor([1]), 7)


def test_timestep_embedding_per_slot_matches_per_sample():
    emb = TimestepEmbedding(16)
    t = torch.tensor([4, 9])
    assert torch.allclose(emb(t.unsqueeze(1).expand(2, 5))[:, 3], emb(t), atol=1e-6)


def _unet():
    torch.manual_seed(0)
    return ConditionalUnet1D(input_dim=3, global_cond_dim=6, down_dims=(16, 32, 64), kernel_size=5, n_groups=4, step_embed_dim=16)


def test_unet_shape_and_conditioning_changes_output():
    net = _unet()
    x, t, g = torch.randn(2, 16, 3), torch.tensor([3, 50]), torch.randn(2, 6)
    y = net(x, t, g)
    assert y.shape == (2, 16, 3) and torch.isfinite(y).all()
    assert (net(x, t, g + 1.0) - y).abs().max() > 1e-3  # global condition matters
    assert (net(x, t + 7, g) - y).abs().max() > 1e-3  # timestep matters
    # samples are independent: changing sample 1 leaves sample 0 untouched
    x2 = x.clone()
    x2[1] += 1
    assert torch.allclose(net(x2, t, g)[0], y[0], atol=1e-5)


def test_unet_precomputed_film_equals_direct_call_and_broadcasts_timestep():
    net = _unet()
    x, g = torch.randn(3, 16, 3), torch.randn(3, 6)
    t = torch.tensor([7])
    film = net.combine_film(net.film_timestep(t), net.film_global(g))
    assert torch.allclose(net(x, film=film), net(x, t.expand(3), g), atol=1e-5)


def test_unet_per_slot_timesteps_equal_per_sample_when_uniform():
    net = _unet()
    x, g = torch.randn(2, 16, 3), torch.randn(2, 6)
    t = torch.tensor([12, 40])
    per_sample = net(x, t, g)
    per_slot = net(x, t[:, None].expand(2, 16), g)
    assert torch.allclose(per_slot, per_sample, atol=1e-5)
    mixed = t[:, None].expand(2, 16).clone()
    mixed[:, 8:] += 30  # different noise level in the later slots changes the output
    assert (net(x, mixed, g) - per_sample).abs().max() > 1e-3


def test_unet_rejects_bad_horizon_and_missing_condition():
    net = _unet()
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 10, 3), torch.tensor([1]), torch.randn(1, 6))
    with pytest.raises(ValueError, match="global condition"):
        net(torch.randn(1, 16, 3), torch.tensor([1]), None)
    with pytest.raises(ValueError, match="width"):
        net(torch.randn(1, 16, 3), torch.tensor([1]), torch.randn(1, 5))


def test_unet_state_dict_is_contiguous_for_safetensors():
    assert all(v.is_contiguous() for v in _unet().state_dict().values())


def test_resnet18_gn_shapes_and_no_batchnorm():
    net = ResNet18GN()
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 512, 2, 2)
    assert net.feature_shape(76, 76) == (512, 3, 3) and net.feature_shape(58, 33) == (512, 2, 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert 11.0e6 < sum(p.numel() for p in net.parameters()) < 11.3e6  # ResNet-18 trunk size


def test_spatial_softmax_finds_the_peak():
    ss = SpatialSoftmax(in_channels=2, height=5, width=7, num_keypoints=None)
    feats = torch.zeros(1, 2, 5, 7)
    feats[0, 0, 0, 6] = 50.0  # top-right corner
    feats[0, 1, 2, 3] = 50.0  # center
    kp = ss(feats)
    assert kp.shape == (1, 2, 2)
    assert torch.allclose(kp[0, 0], torch.tensor([1.0, -1.0]), atol=1e-3)
    assert torch.allclose(kp[0, 1], torch.tensor([0.0, 0.0]), atol=1e-3)
    assert SpatialSoftmax(512, 3, 3, 32)(torch.randn(4, 512, 3, 3)).shape == (4, 32, 2)
    with pytest.raises(ValueError):
        ss(torch.zeros(1, 2, 4, 7))


def test_transformer_block_respects_key_mask_and_causality():
    torch.manual_seed(0)
    blk = TransformerBlock(dim=16, n_heads=4).eval()
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[True, True, True, False, False], [True] * 5])
    y = blk(x, attention_mask(keep))
    x2 = x.clone()
    x2[0, 3:] = torch.randn(2, 16)  # masked keys: other tokens must not notice
    y2 = blk(x2, attention_mask(keep))
    assert torch.allclose(y[0, :3], y2[0, :3], atol=1e-5)
    assert (blk(x2) - blk(x))[0, :3].abs().max() > 1e-4  # without the mask they do
    causal = attention_mask(causal_len=5)
    x3 = x.clone()
    x3[:, 4] += 1.0
    assert torch.allclose(blk(x, causal)[:, :4], blk(x3, causal)[:, :4], atol=1e-5)
    enc = TransformerEncoder(dim=16, depth=2, n_heads=4)
    assert enc(x, attention_mask(keep)).shape == (2, 5, 16)
