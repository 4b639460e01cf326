"""The DiT block (robopolicy/nn/dit.py): adaLN-Zero starts as the identity, conditioning reaches
the output once the gates open, context tokens condition and are dropped, masks apply, and the
patch helpers round-trip."""

from __future__ import annotations

import pytest
import torch

from robopolicy.nn import AdaLNHead, AdaLNZeroBlock, DiT, TransformerBlock, patchify, sincos_2d, unpatchify, zero_init_


def test_adaln_zero_dit_is_the_identity_at_init_and_heads_output_zero():
    torch.manual_seed(0)
    dit = DiT(16, depth=3, n_heads=2)
    x, cond, ctx = torch.randn(2, 5, 16), torch.randn(2, 16), torch.randn(2, 3, 16)
    assert torch.equal(dit(x, cond, context=ctx), x)
    head = AdaLNHead(16, 7, 16)
    zero_init_(head)
    assert torch.equal(head(x, cond), torch.zeros(2, 5, 7))


def test_gates_open_after_one_step_and_condition_then_matters():
    torch.manual_seed(0)
    dit = DiT(16, depth=2, n_heads=2)
    x, cond = torch.randn(4, 5, 16), torch.randn(4, 16)
    loss = (dit(x, cond) - torch.randn(4, 5, 16)).pow(2).mean()
    loss.backward()
    # at init only the modulation layers can move (every gate is zero)
    grads = {n: p.grad.abs().sum().item() for n, p in dit.named_parameters()}
    assert all(v > 0 for n, v in grads.items() if "modulation" in n)
    assert all(v == 0 for n, v in grads.items() if "modulation" not in n)
    with torch.no_grad():
        for p in dit.parameters():
            p -= 0.1 * p.grad if p.grad is not None else 0
    out_a, out_b = dit(x, cond), dit(x, cond + 1)
    assert not torch.allclose(out_a, x) and not torch.allclose(out_a, out_b)


def test_per_token_condition_equals_broadcast_vector():
    torch.manual_seed(0)
    dit = DiT(16, depth=2, n_heads=2, zero_init=False)
    x, cond = torch.randn(2, 5, 16), torch.randn(2, 16)
    torch.testing.assert_close(dit(x, cond), dit(x, cond[:, None].expand(2, 5, 16)))


def test_context_conditions_is_dropped_and_padding_is_ignored():
    torch.manual_seed(0)
    dit = DiT(16, depth=2, n_heads=2, zero_init=False).eval()
    x, cond, ctx = torch.randn(2, 5, 16), torch.randn(2, 16), torch.randn(2, 3, 16)
    out = dit(x, cond, context=ctx)
    assert out.shape == x.shape
    # (not ctx + 1: the context passes a LayerNorm, which removes a per-token constant, so that
    # comparison only differed by rounding, machine-dependently)
    assert not torch.allclose(out, dit(x, cond, context=ctx + torch.randn(ctx.shape, generator=torch.Generator().manual_seed(1))))
    # a padded context token changes nothing, whatever it holds
    mask = torch.tensor([[True, True, False], [True, True, False]])
    other = ctx.clone()
    other[:, 2] = 100.0
    torch.testing.assert_close(dit(x, cond, ctx, mask), dit(x, cond, other, mask))
    torch.testing.assert_close(dit(x, cond, ctx, mask), dit(x, cond, ctx[:, :2]))


def test_attention_mask_blocks_a_token_group():
    torch.manual_seed(0)
    dit = DiT(16, depth=2, n_heads=2, zero_init=False).eval()
    x, cond = torch.randn(1, 6, 16), torch.randn(1, 16)
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[:3, 3:] = False  # tokens 0-2 may not look at 3-5
    y = x.clone()
    y[:, 3:] += 1.0
    a, b = dit(x, cond, attn_mask=mask), dit(y, cond, attn_mask=mask)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_bad_shapes_are_named():
    dit = DiT(16, depth=1, n_heads=2)
    with pytest.raises(ValueError, match="DiT input"):
        dit(torch.randn(2, 5, 8), torch.randn(2, 16))
    with pytest.raises(ValueError, match="context"):
        dit(torch.randn(2, 5, 16), torch.randn(2, 16), context=torch.randn(3, 2, 16))
    with pytest.raises(ValueError, match="divisible"):
        AdaLNZeroBlock(10, 3, 10)


def test_patchify_round_trip_and_layout():
    x = torch.randn(2, 3, 16, 24)
    tokens = patchify(x, 8)
    assert tokens.shape == (2, 2 * 3, 8 * 8 * 3)
    assert torch.equal(unpatchify(tokens, 8, 3, 16, 24), x)
    # token 1 is the patch at row 0, column 1; channels last inside a token
    assert torch.equal(tokens[0, 1].view(8, 8, 3), x[0, :, :8, 8:16].permute(1, 2, 0))
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.randn(1, 3, 10, 16), 8)
    with pytest.raises(ValueError, match="unpatchify expects"):
        unpatchify(tokens[:, :5], 8, 3, 16, 24)


def test_sincos_2d_rows_and_columns():
    pos = sincos_2d(16, 3, 4)
    assert pos.shape == (12, 16)
    # cells of one row share the row half; cells of one column share the column half
    assert torch.equal(pos[4, :8], pos[7, :8]) and not torch.equal(pos[4, 8:], pos[7, 8:])
    assert torch.equal(pos[1, 8:], pos[9, 8:]) and not torch.equal(pos[1, :8], pos[9, :8])
    assert len({tuple(r.tolist()) for r in pos}) == 12


def test_transformer_block_unchanged_by_the_shared_attention():
    # TransformerBlock and the DiT block share robopolicy.nn.transformer.self_attention
    torch.manual_seed(0)
    blk = TransformerBlock(16, 2).eval()
    x = torch.randn(2, 5, 16)
    b, n, d = x.shape
    q, k, v = blk.qkv(blk.norm1(x)).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
    att = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v
    h = x + blk.proj(att.transpose(1, 2).reshape(b, n, d))
    torch.testing.assert_close(blk(x), h + blk.mlp(blk.norm2(h)))
