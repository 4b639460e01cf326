"""``robopolicy-train``: with no arguments, records 50 demonstrations of Meta-World
button-press-topdown-v3 if missing, trains the default Diffusion Policy for 2000 steps, evaluates
it and prints the success rate. See configs/train.yaml."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robopolicy.cli.configstore import CONFIG_DIR, register_configs
from robopolicy.cli.errors import config_errors


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> float:
    from robopolicy.config_utils import to_object
    from robopolicy.train.run import choose_run_dir, run_training

    policy_name = HydraConfig.get().runtime.choices["policy"]
    with config_errors():
        train_cfg = to_object(cfg)
        run_dir = choose_run_dir(train_cfg, policy_name)
    result = run_training(train_cfg, policy_name, run_dir=run_dir)
    if result.get("main_process", True):  # under accelerate launch: one summary, from the main process
        print("\n" + summary_line(result))
    return float("nan") if result["success_rate"] is None else result["success_rate"]


def summary_line(result: dict) -> str:
    """The job's last line: the success rate (or how to evaluate), the steps and minutes of
    training (after a resume: of the whole run and of this process), the run folder."""
    steps, minutes = result["train_steps"], result["train_minutes"]
    trained = f"{steps} steps, {minutes:.1f} min of training"
    if result.get("resumed_from_step"):
        trained = (f"{steps} steps, {minutes:.1f} min of training in total ({result['steps_this_process']} steps, "
                   f"{result['minutes_this_process']:.1f} min in this process, resumed at step "
                   f"{result['resumed_from_step']})")
    if result["success_rate"] is None:
        return (f"trained {trained} (eval.episodes=0: not evaluated; run robopolicy-eval "
                f"checkpoint={result['run_dir']}); run folder {result['run_dir']}")
    return (f"success rate {result['success_rate']:.1%} over {result['episodes']} episodes "
            f"(95% CI {result['ci95'][0]:.1%}-{result['ci95'][1]:.1%}) after {trained}; "
            f"run folder {result['run_dir']}")


def main() -> None:
    register_configs(full_help=None)
    _main()


if __name__ == "__main__":
    main()
