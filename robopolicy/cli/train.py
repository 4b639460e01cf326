"""``robopolicy-train``: with no arguments, records pushblock demonstrations if missing, trains the
default Diffusion Policy, evaluates it and prints the success rate. See configs/train.yaml."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robopolicy.cli.configstore import CONFIG_DIR, register_configs


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> float:
    from robopolicy.train.run import run_training

    policy_name = HydraConfig.get().runtime.choices["policy"]
    result = run_training(OmegaConf.to_object(cfg), policy_name)
    if result["success_rate"] is None:
        print(f"\ntrained {result['train_steps']} steps in {result['train_minutes']:.1f} min (eval.episodes=0: "
              f"not evaluated; run robopolicy-eval checkpoint={result['run_dir']}); run folder {result['run_dir']}")
        return float("nan")
    print(f"\nsuccess rate {result['success_rate']:.1%} over {result['episodes']} episodes "
          f"(95% CI {result['ci95'][0]:.1%}-{result['ci95'][1]:.1%}) after {result['train_steps']} steps, "
          f"{result['train_minutes']:.1f} min of training; run folder {result['run_dir']}")
    return result["success_rate"]


def main() -> None:
    register_configs()
    _main()


if __name__ == "__main__":
    main()
