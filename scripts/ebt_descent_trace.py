"""Trace EBT-Policy's energy descent on demonstration frames: per step, the mean energy, the distance
of the iterate to the demonstrated chunk (MSE, normalized units) and the step's RMS move, from pure
noise and from a simulated warm start. This is the diagnosis behind the adaptive stop rule in
``robopolicy/samplers/energy.py`` (judge convergence by the step's length, not the energy's decrease).

    python scripts/ebt_descent_trace.py checkpoints/bench_ebt_state_reach-v3 \
        datasets/metaworld_mt1_reach-v3_state_post30 --samples 256 --steps 8
"""

from __future__ import annotations

import argparse

import torch

from robopolicy.benchmarks import trace_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("dataset")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    p, batch, actions = trace_inputs(args.checkpoint, "EBTPolicy", args.dataset, args.samples, g)
    x = p.tokenizer.encode(actions)
    with torch.no_grad():
        tokens, mask = p.observation_tokens(batch)
    energy, a = p.energy_fn(tokens, mask), p.step_size().detach()
    c = p.config
    keep = c.horizon - c.n_action_steps
    starts = {"noise": torch.randn(x.shape, generator=g),
              "warm start": torch.cat((x[:, :keep], x[:, keep - 1 : keep].expand(-1, c.n_action_steps, -1)), 1)
              + 0.1 * torch.randn(x.shape, generator=g)}
    print(f"| start | steps done | mean energy | MSE to demonstration | RMS move of the next step |\n|---|---|---|---|---|")
    for name, y in starts.items():
        y = y.clone().requires_grad_()
        for k in range(args.steps + 1):
            e = energy(y)
            (grad,) = torch.autograd.grad(e.sum(), y)
            move = (a * grad).pow(2).flatten(1).mean(1).sqrt().mean()
            mse = (y.detach() - x).pow(2).mean()
            print(f"| {name} | {k} | {e.mean():.4f} | {mse:.5f} | {move:.4f} |")
            y = (y - a * grad).detach().requires_grad_()


if __name__ == "__main__":
    main()
