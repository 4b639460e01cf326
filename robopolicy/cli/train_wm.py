"""``robopolicy-train-wm [env=metaworld/mt1/push-v3] [steps=...] [model.objective=regression]``:
record play data if missing, train a world model, checkpoint it. See configs/train_wm.yaml."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from robopolicy.cli.configstore import CONFIG_DIR
from robopolicy.cli.errors import config_errors

USAGE = """\
robopolicy-train-wm [env=<suite>] [steps=...] [model.objective=regression] [key=value ...]:
record play data if missing, train a world model, checkpoint it."""


@hydra.main(config_path=CONFIG_DIR, config_name="train_wm", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from robopolicy.config_utils import to_object
    from robopolicy.world_model.train import run_wm_training

    with config_errors():
        wm_cfg = to_object(cfg)
    result = run_wm_training(wm_cfg)
    print(f"\ntrained the world model {result['train_steps']} steps in {result['train_minutes']:.1f} min; "
          f"run folder {result['run_dir']}\nevaluate a policy inside it: robopolicy-eval checkpoint=<policy> "
          f"world_model={result['run_dir']}")


def main() -> None:
    from robopolicy.cli.help import register_help
    from robopolicy.world_model.train import WorldModelTrainConfig

    ConfigStore.instance().store(name="train_wm_schema", node=WorldModelTrainConfig)
    register_help("robopolicy-train-wm", USAGE, WorldModelTrainConfig)
    _main()


if __name__ == "__main__":
    main()
