"""PAD (Prediction with Action): the joint loss and its action-loss ramp, masking of action-free
samples and of padded future frames, the action-only ablation, act / predict shapes, the image
path's independence from the action tokens, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fakes import FEATURES as DATA_FEATURES  # same directory
from data_fakes import frame

from robopolicy.data import LeRobotDataset, LeRobotDatasetWriter
from robopolicy.data.action_free import with_action_free
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.pad import PADConfig, PADPolicy
from robopolicy.types import ACTION_VALID_KEY, FeatureSpec

STATE, ACT, CAM = 5, 3, "observation.images.corner"
FEATURES = FeatureSpec(action_dim=ACT, state_dim=STATE, cameras={"corner": (3, 48, 48)})
STATE_ONLY = FeatureSpec(action_dim=ACT, state_dim=STATE)


def _stats(features: FeatureSpec = FEATURES) -> dict:
    def entry(shape, lo, hi):
        lo, hi = np.full(shape, lo, np.float32), np.full(shape, hi, np.float32)
        return {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4, "q01": lo, "q99": hi}

    out = {"action": entry(ACT, -1.0, 1.0), "observation.state": entry(STATE, -1.0, 1.0)}
    for key in features.image_keys:
        out[key] = entry((3, 1, 1), 0.0, 1.0)
    return out


def _policy(features: FeatureSpec = FEATURES, **kw) -> PADPolicy:
    torch.manual_seed(0)
    cfg = PADConfig.tiny()
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    return PADPolicy(cfg, features, _stats(features))


def _batch(policy: PADPolicy, b: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = policy.config
    pad = torch.zeros(b, c.horizon, dtype=torch.bool)
    pad[0, -3:] = True
    out = {
        "observation.state": torch.rand(b, c.n_obs_steps, STATE, generator=g) * 2 - 1,
        "action": torch.rand(b, c.horizon, ACT, generator=g) * 2 - 1,
        "action_is_pad": pad,
    }
    for key in policy.features.image_keys:
        n = len(policy.delta_timestamps()[key])
        out[key] = torch.rand(b, n, 3, 48, 48, generator=g)
        out[key + "_is_pad"] = torch.zeros(b, n, dtype=torch.bool)
    return out


def _loss(policy, batch, seed=3):
    torch.manual_seed(seed)
    return policy.loss(batch)


# --- data windows ------------------------------------------------------------------------------
def test_delta_timestamps_add_the_future_frames_to_the_first_camera_only():
    feats = FeatureSpec(action_dim=ACT, state_dim=STATE, cameras={"corner": (3, 48, 48), "wrist": (3, 48, 48)}, fps=10)
    policy = _policy(feats, future_steps=(2, 4))
    dt = policy.delta_timestamps()
    assert dt[CAM] == [-0.1, 0.0, 0.2, 0.4]
    assert dt["observation.images.wrist"] == dt["observation.state"] == [-0.1, 0.0]
    assert _policy(feats, image_loss_weight=0.0).delta_timestamps()[CAM] == [-0.1, 0.0]


def test_training_batch_without_the_future_frames_is_refused_by_name():
    policy = _policy().train()
    batch = _batch(policy)
    batch[CAM] = batch[CAM][:, :2]
    with pytest.raises(ValueError, match="n_obs_steps \\+ len\\(future_steps\\) = 3"):
        policy.loss(batch)


# --- the loss ----------------------------------------------------------------------------------
def test_default_zero_init_reaches_every_parameter_after_one_step():
    # adaLN-Zero: at init the zero gates and heads stop most gradients; one step opens them
    policy = _policy(adaln_zero_init=True).train()
    assert torch.equal(policy.action_head.linear.weight, torch.zeros_like(policy.action_head.linear.weight))
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    for i in range(4):  # each step opens one more zero layer: heads, then gates, then what they gate
        opt.zero_grad()
        loss, info = _loss(policy, _batch(policy, seed=i), seed=i)
        assert torch.isfinite(loss) and {"loss", "image_loss", "action_loss", "action_weight"} <= set(info)
        loss.backward()
        if i < 3:
            opt.step()
    missing = [n for n, p in policy.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing


def test_loss_is_weighted_sum_of_image_and_action_losses():
    policy = _policy(image_loss_weight=0.5, action_loss_weight=2.0).train()
    loss, info = _loss(policy, _batch(policy))
    assert info["image_loss"] > 0 and info["action_loss"] > 0
    assert loss.item() == pytest.approx(0.5 * info["image_loss"] + 2.0 * info["action_loss"], rel=1e-5)


def test_action_loss_ramps_in_after_the_warmup_and_the_counter_is_saved():
    # the joint sum is checked above; state-only keeps this many-step test fast
    policy = _policy(STATE_ONLY, action_loss_warmup_steps=3, action_loss_ramp_steps=4, action_loss_weight=2.0).train()
    weights = []
    for i in range(9):
        loss, info = _loss(policy, _batch(policy, b=2), seed=i)
        weights.append(info["action_weight"])
        assert loss.item() == pytest.approx(info["action_weight"] * info["action_loss"], rel=1e-5)
    assert weights == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
    assert int(policy.state_dict()["train_step"]) == 9
    policy.eval()
    policy.loss(_batch(policy, b=2))  # evaluation losses do not advance the ramp
    assert int(policy.train_step) == 9
    # ramp_steps=0: the official switch, off for exactly the warm-up steps
    switch = _policy(STATE_ONLY, action_loss_warmup_steps=2).train()
    assert [_loss(switch, _batch(switch, b=2), seed=i)[1]["action_weight"] for i in range(4)] == [0, 0, 1, 1]


def test_action_free_samples_mask_the_action_loss_and_keep_the_image_loss():
    policy = _policy().train()
    batch = _batch(policy)
    batch[ACTION_VALID_KEY] = torch.tensor([True, False, True, False])
    base = _loss(policy, batch)[1]
    # the actions of action-free samples do not matter at all (their slots are masked and neutral)
    other = dict(batch, action=batch["action"].clone())
    other["action"][[1, 3]] = 5.0
    again = _loss(policy, other)[1]
    assert again["action_loss"] == pytest.approx(base["action_loss"]) and again["loss"] == pytest.approx(base["loss"])
    # ... while a valid sample's actions do
    changed = dict(batch, action=batch["action"].clone())
    changed["action"][0] += 0.5
    assert _loss(policy, changed)[1]["action_loss"] != pytest.approx(base["action_loss"])
    # all action-free: no action loss, the image loss unchanged by the flag
    none = dict(batch, **{ACTION_VALID_KEY: torch.zeros(4, dtype=torch.bool)})
    info = _loss(policy, none)[1]
    assert info["action_loss"] == 0.0 and info["image_loss"] == pytest.approx(_loss(policy, _batch(policy))[1]["image_loss"])
    with pytest.raises(ValueError, match="action_is_valid"):
        policy.loss(dict(batch, **{ACTION_VALID_KEY: torch.ones(3, dtype=torch.bool)}))


def test_padded_future_frames_are_left_out_of_the_image_loss():
    policy = _policy(future_steps=(2, 4)).train()
    batch = _batch(policy)
    batch[CAM + "_is_pad"][1, 3] = True  # sample 1's second future frame is past the episode end
    base = _loss(policy, batch)[1]["image_loss"]
    other = dict(batch, **{CAM: batch[CAM].clone()})
    other[CAM][1, 3] = 0.0
    assert _loss(policy, other)[1]["image_loss"] == pytest.approx(base)
    other[CAM][1, 2] = 0.0  # an unpadded future frame does count
    assert _loss(policy, other)[1]["image_loss"] != pytest.approx(base)


def test_image_prediction_does_not_see_the_action_tokens():
    policy = _policy().eval()
    obs = {k: v[:, :2] if k == CAM else v for k, v in _batch(policy, b=2).items() if k.startswith("observation")}
    ctx, current = policy.observation_context(obs)
    cond = policy._cond(ctx, torch.tensor([5, 9]))
    imgs = torch.randn(2, policy.n_image_tokens, policy.image_token_dim)
    a1, i1 = policy.denoise(ctx, current, cond, torch.randn(2, 8, ACT), imgs)
    a2, i2 = policy.denoise(ctx, current, cond, torch.randn(2, 8, ACT), imgs)
    torch.testing.assert_close(i1, i2)
    assert not torch.allclose(a1, a2)
    open_ = _policy(block_image_to_action=False).eval()
    _, j1 = open_.denoise(ctx, current, cond, torch.randn(2, 8, ACT), imgs)
    _, j2 = open_.denoise(ctx, current, cond, torch.randn(2, 8, ACT), imgs)
    assert not torch.allclose(j1, j2)


def test_action_only_ablation_has_no_image_tokens_and_fewer_parameters():
    joint, only = _policy(), _policy(image_loss_weight=0.0)
    assert only.camera is None and not hasattr(only, "image_head")
    assert sum(p.numel() for p in only.parameters()) < sum(p.numel() for p in joint.parameters())
    batch = _batch(only)  # the camera window holds only the observed frames
    assert batch[CAM].shape[1] == 2
    loss, info = _loss(only.train(), batch)
    assert torch.isfinite(loss) and "image_loss" not in info and loss.item() == pytest.approx(info["action_loss"])
    chunk, frames = only.eval().predict({k: v for k, v in batch.items() if k.startswith("observation")})
    assert chunk.shape == (4, 8, ACT) and frames is None


def test_without_a_camera_pad_is_the_action_only_dit():
    policy = _policy(STATE_ONLY).train()
    loss, info = _loss(policy, _batch(policy))
    assert torch.isfinite(loss) and "image_loss" not in info


# --- inference ---------------------------------------------------------------------------------
def test_act_and_predict_shapes_and_frames_in_range():
    policy = _policy(future_steps=(2, 4)).eval()
    obs = {k: v[:, :2] if k == CAM else v for k, v in _batch(policy, b=3).items() if k.startswith("observation")}
    torch.manual_seed(0)
    a, state = policy.act(obs, policy.init_state(3))
    assert a.shape == (3, 4, ACT) and state.info["denoiser_evals"] == 4 and state.step == 1
    torch.manual_seed(0)
    chunk, frames = policy.predict(obs)
    assert torch.equal(chunk[:, 1:5], a)  # act returns the chunk from the current frame
    assert frames.shape == (3, 2, 3, 32, 32) and frames.min() >= 0 and frames.max() <= 1
    chunk2, _ = policy.predict(obs, num_steps=2)
    assert chunk2.shape == chunk.shape and not torch.equal(chunk2, chunk)


def test_frames_and_tokens_round_trip_through_the_patch_layout():
    policy = _policy(future_steps=(2, 4))
    frames = torch.rand(2, 2, 3, 32, 32)
    from robopolicy.nn import patchify

    tokens = patchify(policy._pixels(frames), policy.config.patch_size)
    torch.testing.assert_close(policy.frames_from_tokens(tokens), frames)


# --- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(image_size=30), "multiple of patch_size"),
        (dict(future_steps=(4, 2)), "increasing"),
        (dict(future_steps=(0,)), "increasing"),
        (dict(action_loss_weight=0.0), "action_loss_weight"),
        (dict(image_loss_weight=-1.0), "image_loss_weight"),
        (dict(image_loss_weight=0.0, action_loss_warmup_steps=10), "train nothing"),
        (dict(d_model=30), "divisible by 4"),
    ],
)
def test_bad_config_is_refused_by_name(kw, match):
    cfg = PADConfig.tiny()
    for k, v in kw.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=match):
        cfg.__post_init__()


# --- co-training data: action-free episodes ----------------------------------------------------
def _write(root, features: dict, eps, with_action=True):
    with LeRobotDatasetWriter.create(root, 10, features, use_videos=False) as w:
        for ep in eps:
            for k in range(6):
                f = frame(ep, k)
                if not with_action:
                    f.pop("action")
                w.add_frame(f, task="push")
            w.save_episode()


def test_action_free_folders_join_the_training_data_flagged_and_masked(tmp_path):
    _write(tmp_path / "demos", DATA_FEATURES, [0, 1])
    no_action = {k: v for k, v in DATA_FEATURES.items() if k != "action"}
    _write(tmp_path / "video", no_action, [2, 3], with_action=False)
    demos = LeRobotDataset(tmp_path / "demos")
    features = demos.feature_spec()
    cfg = PADConfig.tiny()
    cfg.image_size, cfg.future_steps, cfg.encoder.image_tokens = 16, (2,), "feature_map"
    policy = PADPolicy(cfg, features, demos.training_stats())
    train = LeRobotDataset(tmp_path / "demos", delta_timestamps=policy.delta_timestamps(), camera_keys=features.image_keys)
    mixed = with_action_free(train, [tmp_path / "video"], policy)
    assert len(mixed) == 24
    demo_item, free_item = mixed[0], mixed[12]
    assert set(demo_item) == set(free_item) and bool(demo_item[ACTION_VALID_KEY]) and not bool(free_item[ACTION_VALID_KEY])
    assert torch.equal(free_item["action"], torch.zeros(8, 2)) and bool(free_item["action_is_pad"].all())
    assert free_item["observation.images.top"].shape == (3, 3, 16, 16)  # observed + future frames
    batch = torch.utils.data.default_collate([mixed[i] for i in (0, 5, 12, 20)])
    assert batch[ACTION_VALID_KEY].tolist() == [True, True, False, False]
    loss, info = policy.train().loss(batch)
    assert torch.isfinite(loss) and info["image_loss"] > 0

    # refusals, each naming the problem
    dp = DiffusionPolicy(DiffusionConfig.tiny(), FeatureSpec(action_dim=2, state_dim=3), demos.training_stats())
    with pytest.raises(ValueError, match="cannot learn from action-free"):
        with_action_free(train, [tmp_path / "video"], dp)
    with pytest.raises(FileNotFoundError, match="no meta/info.json"):
        with_action_free(train, [tmp_path / "missing"], policy)
    wide = dict(no_action, **{"observation.state": {"dtype": "float32", "shape": [4], "names": None}})
    with LeRobotDatasetWriter.create(tmp_path / "wide", 10, wide, use_videos=False) as w:
        for k in range(4):
            w.add_frame({"observation.state": np.zeros(4, np.float32),
                         "observation.images.top": np.zeros((16, 16, 3), np.uint8)}, task="push")
        w.save_episode()
    with pytest.raises(ValueError, match="observation.state width 4"):
        with_action_free(train, [tmp_path / "wide"], policy)
