"""Decode Discrete Diffusion VLA on demonstration frames with each number of rounds and compare with
the demonstrated chunk: token accuracy, mean bin distance, and the action error (L1, raw units) over
the executed steps. If more rounds drift further from the demonstrations on *training* frames, the
model is conditioning on its own early commitments badly (exposure bias), not overfitting eval states.

    python scripts/ddvla_rounds_trace.py checkpoints/bench_ddvla_image_metaworld_mt10 \
        datasets/metaworld_mt10_image --samples 128
"""

from __future__ import annotations

import argparse

import torch

from robopolicy.benchmarks import provenance, trace_inputs, write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("dataset")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--rounds", type=int, nargs="*", default=[1, 2, 4, 8, 12])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    p, batch, actions = trace_inputs(args.checkpoint, "DDVLAPolicy", args.dataset, args.samples, g)
    target = p.tokenizer.encode(actions)
    c = p.config
    a_dim = p.features.action_dim
    # the executed part of the chunk, as in act(): n_action_steps steps from the newest observed frame
    start = c.n_obs_steps - 1
    sl = slice(start * a_dim, (start + c.n_action_steps) * a_dim)
    lines = ["| decoding | token accuracy | mean bin distance | executed-step L1 (raw action units) |", "|---|---|---|---|"]
    print("\n".join(lines))
    settings = [(f"{r} rounds, remask", dict(decode_rounds=r, remask=True)) for r in args.rounds]
    settings.append((f"{max(args.rounds)} rounds, no remask", dict(decode_rounds=max(args.rounds), remask=False)))
    for name, kw in settings:
        for k, v in kw.items():
            setattr(c, k, v)
        tokens, _ = p.sample_tokens(batch)
        acc = (tokens == target)[:, sl].float().mean()
        dist = (tokens - target)[:, sl].abs().float().mean()
        l1 = (p.tokenizer.decode(tokens) - p.tokenizer.decode(target)).abs()[:, start : start + c.n_action_steps].mean()
        lines.append(f"| {name} | {acc:.3f} | {dist:.2f} | {l1:.4f} |")
        print(lines[-1], flush=True)
    if not args.no_doc:
        body = (f"Checkpoint `{args.checkpoint}` decoded on {args.samples} random frames of its own training set "
                f"`{args.dataset}` (seed {args.seed}), compared with the demonstrated chunk over the executed steps "
                f"({c.n_action_steps} actions from the newest observed frame).\n\n" + "\n".join(lines) + "\n\n" + provenance())
        write_section(f"Discrete Diffusion VLA: decoding rounds on training frames ({args.checkpoint})", body)


if __name__ == "__main__":
    main()
