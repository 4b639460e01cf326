"""Discrete Diffusion VLA: masking and loss, the decoding schedule, secondary remasking, the
autoregressive baseline, fitting a fixed mapping, the transformers backbone, eval-time overrides."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from robopolicy.policies.discrete_diffusion import DDVLAConfig, DDVLAPolicy
from robopolicy.samplers.masked import (
    decode_autoregressive,
    decode_parallel,
    random_token_inputs,
    masked_after_rounds,
    own_prediction_inputs,
    training_mask,
)
from robopolicy.tokenizers import TokenizerConfig
from robopolicy.types import FeatureSpec

STATE, ACT = 5, 3
FEATURES = FeatureSpec(action_dim=ACT, state_dim=STATE)


def _stats() -> dict:
    def entry(n, lo, hi):
        lo, hi = np.full(n, lo, np.float32), np.full(n, hi, np.float32)
        return {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4, "q01": lo, "q99": hi}

    return {"action": entry(ACT, -1.0, 1.0), "observation.state": entry(STATE, -1.0, 1.0)}


def _policy(**kw) -> DDVLAPolicy:
    torch.manual_seed(0)
    cfg = DDVLAConfig.tiny()
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    return DDVLAPolicy(cfg, FEATURES, _stats())


def _batch(policy: DDVLAPolicy, b: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = policy.config
    pad = torch.zeros(b, c.horizon, dtype=torch.bool)
    pad[0, -3:] = True
    return {
        "observation.state": torch.rand(b, c.n_obs_steps, STATE, generator=g) * 2 - 1,
        "action": torch.rand(b, c.horizon, ACT, generator=g) * 2 - 1,
        "action_is_pad": pad,
    }


# --- training --------------------------------------------------------------------------------
def test_masking_touches_only_action_tokens_and_loss_only_masked_ones():
    policy = _policy(random_token_prob=0.0, visible_loss_weight=0.0).train()  # the masked-only objective
    batch = _batch(policy)
    seen = {}
    inner = policy.action_logits

    def spy(prefix, tokens):
        seen["prefix"], seen["tokens"] = prefix.x.detach().clone(), tokens.clone()
        seen["logits"] = inner(prefix, tokens)
        return seen["logits"]

    policy.action_logits = spy
    torch.manual_seed(3)
    loss, info = policy.loss(batch)

    target = policy.tokenizer.encode(batch["action"])
    tokens = seen["tokens"]
    masked = tokens == policy.mask_id
    # observation tokens are exactly the encoder's; action tokens are the true ones or [MASK]
    assert torch.equal(seen["prefix"], policy.observation_tokens(batch).x.detach())
    assert torch.equal(tokens[~masked], target[~masked])
    assert masked.any(dim=1).all() and (~masked).any()
    assert 0 < info["mask_ratio"] < 1

    # the loss is the mean CE over masked, non-padded positions, nothing else
    pad = batch["action_is_pad"].repeat_interleave(ACT, dim=1)
    sel = masked & ~pad
    logp = F.log_softmax(seen["logits"].float(), dim=-1)
    manual = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)[sel].mean()
    assert torch.allclose(loss, manual, atol=1e-6)
    assert not torch.allclose(loss, -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).mean(), atol=1e-4)


def test_training_mask_ratio_follows_the_schedule():
    g = torch.Generator().manual_seed(0)
    m = training_mask(20000, 64, "cosine", generator=g)
    assert m.any(1).all()  # at least one masked token per sample
    # E[cos(pi/2 r)] for r ~ U(0,1) is 2/pi (plus < 1/64 from rounding up)
    assert abs(m.float().mean().item() - 2 / math.pi) < 0.02
    lin = training_mask(20000, 64, "linear", generator=g)
    assert abs(lin.float().mean().item() - 0.5) < 0.02


def test_own_prediction_inputs_fill_visible_tokens_with_the_models_greedy_guess():
    b, n, v, mask_id = 64, 16, 8, 8
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, v, (b, n), generator=g)
    masked = training_mask(b, n, "cosine", generator=g)
    logits = torch.randn(b, n, v, generator=g)
    seen = []

    def fn(tokens):
        seen.append(tokens.clone())
        return logits

    # prob 0: the plain masked objective, no extra evaluation
    tokens, predict = own_prediction_inputs(fn, target, masked, mask_id, 0.0, generator=g)
    assert not seen and torch.equal(predict, masked) and torch.equal(tokens, target.masked_fill(masked, mask_id))

    tokens, predict = own_prediction_inputs(fn, target, masked, mask_id, 1.0, generator=g)
    filled = predict & ~masked
    assert len(seen) == 1 and filled.any()
    # the guess was made with the filled positions masked too (an earlier, more-masked state)
    assert torch.equal(seen[0] == mask_id, masked | filled)
    assert torch.equal(tokens[filled], logits.argmax(-1)[filled])  # the model's own greedy tokens
    assert (tokens[masked] == mask_id).all()
    keep = ~predict
    assert torch.equal(tokens[keep], target[keep])  # the rest are still the true tokens
    # u ~ U(0,1) of the visible tokens: on average about half of them are filled
    assert 0.3 < filled.sum() / (~masked).sum() < 0.7


def test_loss_with_own_predictions_covers_masked_and_filled_positions():
    policy = _policy(own_prediction_prob=1.0, random_token_prob=0.0, visible_loss_weight=0.0).train()
    batch = _batch(policy, b=16)
    seen = []
    inner = policy.action_logits

    def spy(prefix, tokens):
        out = inner(prefix, tokens)
        seen.append((tokens.clone(), out))
        return out

    policy.action_logits = spy
    torch.manual_seed(1)
    loss, info = policy.loss(batch)
    assert len(seen) == 2 and info["own_ratio"] > 0  # one no-grad guess, one trained evaluation
    (guess_in, guess_logits), (tokens, logits) = seen
    masked = tokens == policy.mask_id
    filled = (guess_in == policy.mask_id) & ~masked  # masked for the guess, visible for training
    assert filled.any() and torch.equal(tokens[filled], guess_logits.argmax(-1)[filled])
    target = policy.tokenizer.encode(batch["action"])
    pad = batch["action_is_pad"].repeat_interleave(ACT, dim=1)
    ce = -F.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # the loss is the mean CE over masked and filled non-padded positions, nothing else
    assert torch.allclose(loss, ce[(masked | filled) & ~pad].mean(), atol=1e-6)
    assert not torch.allclose(loss, ce[masked & ~pad].mean(), atol=1e-5)
    loss.backward()
    assert policy.token_embed.weight.grad is not None


# --- decoding --------------------------------------------------------------------------------
def _fixed_logits(b: int, length: int, v: int, seed: int = 0):
    logits = torch.randn(b, length, v, generator=torch.Generator().manual_seed(seed)) * 3
    calls = []

    def fn(tokens):
        calls.append(tokens.clone())
        return logits

    return fn, logits, calls


def test_parallel_schedule_commits_all_tokens_along_the_cosine():
    length, rounds, v, mask_id = 64, 12, 16, 16
    fn, logits, calls = _fixed_logits(2, length, v)
    tokens, trace = decode_parallel(fn, 2, length, mask_id, rounds=rounds, schedule="cosine", remask=False)
    expected = [length - math.floor(length * math.cos(math.pi / 2 * t / rounds)) for t in range(1, rounds + 1)]
    assert expected[-1] == length and expected[0] == 1
    assert trace.committed == [2 * e for e in expected]  # summed over the batch of 2
    assert trace.evals == rounds == len(calls)
    assert (tokens != mask_id).all()
    assert torch.equal(tokens, logits.argmax(-1))  # greedy values: the fixed logits' argmax
    # adaptive order: the first round commits the single most confident position
    first = (calls[1] != mask_id)
    conf = logits.softmax(-1).max(-1).values
    assert torch.equal(first.nonzero()[:, 1], conf.argmax(1))
    assert masked_after_rounds(length, rounds, "linear") == [math.floor(length * (1 - t / rounds) + 1e-9) for t in range(1, rounds + 1)]


def test_schedule_commits_at_least_one_token_per_round_and_rejects_too_many_rounds():
    assert masked_after_rounds(4, 4, "cosine") == [3, 2, 1, 0]
    assert masked_after_rounds(5, 1, "cosine") == [0]
    with pytest.raises(ValueError, match="rounds"):
        masked_after_rounds(4, 5, "cosine")


def _scripted_logits(v: int):
    """Round 1: position 0 sure of token 3. Later rounds: position 0 sure of token 5 (so token 3
    has ~0 probability there), the other positions flat."""
    calls = []

    def fn(tokens):
        calls.append(tokens.clone())
        logits = torch.zeros(1, 4, v)
        logits[0, 0, 3 if len(calls) == 1 else 5] = 20.0
        return logits

    return fn, calls


def test_secondary_remasking_reopens_a_low_confidence_token():
    v, mask_id = 8, 8
    fn, calls = _scripted_logits(v)
    tokens, trace = decode_parallel(fn, 1, 4, mask_id, rounds=4, remask=True, remask_threshold=0.1)
    assert calls[1][0, 0] == 3  # committed in round 1
    assert trace.remasked[1] == 1 and calls[2][0, 0] == mask_id  # re-opened in round 2
    assert trace.committed == [1, 2, 3, 4]  # the schedule still holds
    assert tokens[0, 0] == 5  # and re-decoded from a masked input

    fn, _ = _scripted_logits(v)
    tokens, trace = decode_parallel(fn, 1, 4, mask_id, rounds=4, remask=False)
    assert tokens[0, 0] == 3 and sum(trace.remasked) == 0


def test_autoregressive_decodes_left_to_right_one_token_per_evaluation():
    length, v, mask_id = 10, 6, 6
    fn, logits, calls = _fixed_logits(1, length, v)
    tokens, trace = decode_autoregressive(fn, 1, length, mask_id)
    assert trace.evals == length == len(calls)
    for i, t in enumerate(calls):  # call i sees exactly the first i tokens committed
        assert (t[0, :i] != mask_id).all() and (t[0, i:] == mask_id).all()
    assert torch.equal(tokens, logits.argmax(-1))


def test_act_reports_decoder_evaluations_per_mode():
    policy = _policy().eval()
    obs = {k: v for k, v in _batch(policy, b=2).items() if k.startswith("observation")}
    _, state = policy.act(obs, policy.init_state(2))
    assert state.info["decoder_evals"] == policy.config.decode_rounds == 4
    policy.config.decode_mode = "autoregressive"
    a, state = policy.act(obs, policy.init_state(2))
    assert state.info["decoder_evals"] == policy.config.horizon * ACT == 24
    assert a.shape == (2, policy.config.n_action_steps, ACT)


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="discrete"):
        DDVLAConfig(action_tokenizer=TokenizerConfig(kind="continuous"))
    with pytest.raises(ValueError, match="decode_mode"):
        DDVLAConfig(decode_mode="beam")
    with pytest.raises(ValueError, match="decode_rounds 99 exceeds"):
        _policy(decode_rounds=99)
    with pytest.raises(FileNotFoundError, match="config.json"):
        _policy(backbone="/nonexistent/model")


# --- learning --------------------------------------------------------------------------------
def test_tiny_model_fits_a_fixed_observation_to_action_mapping():
    """4 observations, each with its own fixed chunk: the masked CE falls >= 10x in 100 steps (3.4
    -> ~0.05 measured) and 6-round parallel decoding returns every token's bin (error <= half a bin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses to thread sync on a loaded machine
    try:
        _fit_fixed_mapping()
    finally:
        torch.set_num_threads(threads)


def _fit_fixed_mapping():
    policy = _policy(decode_rounds=6).train()
    c = policy.config
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(4, c.n_obs_steps, STATE, generator=g) * 2 - 1
    actions = torch.rand(4, c.horizon, ACT, generator=g) * 1.6 - 0.8
    batch = {"observation.state": obs.repeat(4, 1, 1), "action": actions.repeat(4, 1, 1)}
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(100):
        loss, _ = policy.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert last < first / 10, (first, last)
    policy.eval()
    chunk = policy.sample_chunk({"observation.state": obs})
    width = 2.0 / c.action_tokenizer.n_bins
    assert (chunk - actions).abs().max() <= width / 2 + 1e-5


# --- transformers backbone -------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_transformers_backbone_loads_and_reloads(arch, tmp_path):
    from transformers import AutoModel, BertConfig, BertModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    if arch == "bert":
        model = BertModel(BertConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                                     vocab_size=8, max_position_embeddings=64))
    else:
        model = LlamaModel(LlamaConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                       intermediate_size=48, vocab_size=8, max_position_embeddings=64))
    model.save_pretrained(tmp_path / arch)
    policy = _policy(backbone=str(tmp_path / arch)).eval()
    saved = AutoModel.from_pretrained(tmp_path / arch).state_dict()
    ours = policy.backbone.model.state_dict()
    assert all(torch.equal(ours[k], saved[k]) for k in saved)  # pretrained weights, not a fresh init
    assert policy.head.in_features == 24

    obs = {k: v for k, v in _batch(policy, b=2, seed=5).items() if k.startswith("observation")}
    expected, state = policy.act(obs, policy.init_state(2))
    assert state.info["decoder_evals"] == policy.config.decode_rounds
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(tmp_path / "p.safetensors"))
    torch.manual_seed(99)
    fresh = DDVLAPolicy(policy.config, FEATURES, None).eval()  # architecture from config.json only
    fresh.load_state_dict(load_file(str(tmp_path / "p.safetensors")))
    got, _ = fresh.act(obs, fresh.init_state(2))
    assert torch.equal(got, expected)

    # action positions attend to each other in both directions (a Llama is causal by default)
    prefix = policy.observation_tokens(obs)
    t = torch.full((2, policy.n_tokens), policy.mask_id)
    t2 = t.clone()
    t2[:, -1] = 0
    with torch.no_grad():
        assert not torch.allclose(policy.action_logits(prefix, t)[:, 0], policy.action_logits(prefix, t2)[:, 0])


# --- eval-time overrides ---------------------------------------------------------------------
def test_checkpoint_loads_with_decoding_overrides(tmp_path):
    from robopolicy.train.checkpoint import load_policy, save_checkpoint

    policy = _policy().eval()
    save_checkpoint(tmp_path / "run", 1, policy, None, None)
    loaded = load_policy(tmp_path / "run", overrides={"decode_rounds": 2, "remask": False})
    assert loaded.config.decode_rounds == 2 and loaded.config.remask is False
    obs = {k: v for k, v in _batch(policy, b=1).items() if k.startswith("observation")}
    _, state = loaded.act(obs, loaded.init_state(1))
    assert state.info["decoder_evals"] == 2
    with pytest.raises(ValueError, match="decode_round"):
        load_policy(tmp_path / "run", overrides={"decode_round": 2})


# --- training what remasking reads -------------------------------------------------------------
def test_random_token_inputs_corrupt_only_visible_positions():
    g = torch.Generator().manual_seed(0)
    b, n, v, mask_id = 256, 32, 16, 16
    target = torch.randint(0, v, (b, n), generator=g)
    masked = training_mask(b, n, "cosine", generator=g)
    tokens = target.masked_fill(masked, mask_id)
    out, corrupted = random_token_inputs(tokens, masked, v, 0.2, generator=g)
    assert not (corrupted & masked).any() and (out[masked] == mask_id).all()
    assert torch.equal(out[~corrupted], tokens[~corrupted])
    assert ((out[corrupted] >= 0) & (out[corrupted] < v)).all()
    assert abs(corrupted.sum() / (~masked).sum() - 0.2) < 0.03
    same, none = random_token_inputs(tokens, masked, v, 0.0, generator=g)
    assert torch.equal(same, tokens) and not none.any()


def test_loss_adds_the_weighted_cross_entropy_on_visible_positions():
    policy = _policy(random_token_prob=0.3, visible_loss_weight=0.5).train()
    batch = _batch(policy, b=16)
    seen = {}
    inner = policy.action_logits

    def spy(prefix, tokens):
        seen["tokens"], seen["logits"] = tokens.clone(), inner(prefix, tokens)
        return seen["logits"]

    policy.action_logits = spy
    torch.manual_seed(5)
    loss, info = policy.loss(batch)
    target = policy.tokenizer.encode(batch["action"])
    tokens = seen["tokens"]
    masked = tokens == policy.mask_id
    real = ~batch["action_is_pad"].repeat_interleave(ACT, dim=1)
    assert (tokens[~masked] != target[~masked]).any()  # some visible tokens were corrupted
    ce = -F.log_softmax(seen["logits"].float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    manual = ce[masked & real].mean() + 0.5 * ce[~masked & real].mean()
    assert torch.allclose(loss, manual, atol=1e-5)
    assert "visible_loss" in info and "noised_fix_acc" in info


def _train_remask_scorer(visible_loss_weight: float, random_token_prob: float, steps: int = 150) -> float:
    """Train the tiny policy on a deterministic state -> chunk task; return the mean probability it
    gives a visible token that is right minus one that was replaced by a random value."""
    policy = _policy(random_token_prob=random_token_prob, visible_loss_weight=visible_loss_weight, dropout=0.0)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    c = policy.config

    def batch(b=32):
        state = torch.rand(b, c.n_obs_steps, STATE, generator=g) * 2 - 1
        t = torch.linspace(0, 1, c.horizon)[None, :, None]
        action = (state[:, -1:, :ACT] * (1 - t) + 0.5 * t).clamp(-1, 1)
        return {"observation.state": state, "action": action, "action_is_pad": torch.zeros(b, c.horizon, dtype=torch.bool)}

    for _ in range(steps):
        loss, _ = policy.loss(batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    with torch.no_grad():
        bt = batch(64)
        target = policy.tokenizer.encode(bt["action"])
        prefix = policy.observation_tokens(bt)
        masked = training_mask(64, policy.n_tokens, "cosine", generator=g)
        tokens, corrupted = random_token_inputs(target.masked_fill(masked, policy.mask_id), masked, policy.n_bins, 0.3, generator=g)
        corrupted &= tokens != target
        probs = policy.action_logits(prefix, tokens).softmax(-1)
        p_tok = probs.gather(-1, tokens.clamp_max(policy.n_bins - 1).unsqueeze(-1)).squeeze(-1)
        right = ~masked & ~corrupted
        return float(p_tok[right].mean() - p_tok[corrupted].mean())


@pytest.mark.slow  # two short trainings: ~1 min on a quiet 2-core machine
def test_visible_loss_teaches_the_score_that_remasking_reads():
    # Without a loss on visible positions their outputs are untrained: a wrong committed token
    # scores about like a right one. With it, wrong tokens score clearly lower.
    trained = _train_remask_scorer(visible_loss_weight=0.5, random_token_prob=0.2)
    untrained = _train_remask_scorer(visible_loss_weight=0.0, random_token_prob=0.0)
    assert trained > 0.3
    assert trained > untrained + 0.2


def test_residual_drop_check_reopens_a_token_whose_confidence_fell():
    v, mask_id = 8, 8
    calls = []

    def fn(tokens):  # position 0: sure of 3 in round 1, then only ~0.5 on it (above the threshold)
        calls.append(tokens.clone())
        logits = torch.zeros(1, 4, v)
        logits[0, 0, 3] = 20.0 if len(calls) == 1 else 2.0
        return logits

    tokens, trace = decode_parallel(fn, 1, 4, mask_id, rounds=4, remask=True, remask_threshold=0.05, remask_drop=0.3)
    assert trace.remasked[1] == 1 and calls[2][0, 0] == mask_id
    calls.clear()
    tokens, trace = decode_parallel(fn, 1, 4, mask_id, rounds=4, remask=True, remask_threshold=0.05, remask_drop=1.0)
    assert sum(trace.remasked) == 0 and tokens[0, 0] == 3


def test_confidence_gap_score_orders_commits_differently_from_confidence():
    v, mask_id = 4, 4
    probs = torch.tensor([[[0.50, 0.48, 0.01, 0.01],   # highest confidence, but two values compete
                           [0.46, 0.18, 0.18, 0.18],   # lower confidence, a clear winner
                           [0.25, 0.25, 0.25, 0.25],
                           [0.25, 0.25, 0.25, 0.25]]])
    logits = probs.log()

    def first_commit(score: str) -> int:
        seen = []

        def fn(tokens):
            seen.append(tokens.clone())
            return logits

        decode_parallel(fn, 1, 4, mask_id, rounds=4, remask=False, score=score)
        return int((seen[1][0] != mask_id).nonzero()[0])

    assert first_commit("confidence") == 0
    assert first_commit("gap") == 1
    with pytest.raises(ValueError, match="score"):
        decode_parallel(lambda t: logits, 1, 4, mask_id, rounds=2, score="nope")
