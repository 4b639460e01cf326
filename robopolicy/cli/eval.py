"""``robopolicy-eval checkpoint=<path> episodes=50 [env=<suite>]``: success rate per task with a
95% CI, mean episode length, videos, a table, a plot, and eval_info.json in the results folder."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from robopolicy.cli.configstore import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> float:
    from robopolicy.eval.job import run_eval

    result = run_eval(OmegaConf.to_object(cfg))
    print(result.get("table", ""))
    print(f"\nsuccess rate {result['success_rate']:.1%} over {result['episodes']} episodes "
          f"(95% CI {result['ci95'][0]:.1%}-{result['ci95'][1]:.1%}); results in {result.get('out_dir')}")
    return result["success_rate"]


def main() -> None:
    from robopolicy.eval.job import EvalJobConfig

    ConfigStore.instance().store(name="eval_schema", node=EvalJobConfig)
    _main()


if __name__ == "__main__":
    main()
