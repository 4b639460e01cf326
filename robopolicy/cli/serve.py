"""``robopolicy-serve checkpoint=<path> port=8765``: serve a checkpoint over websocket (msgpack +
numpy) to robot-side clients (``robopolicy.deploy.client.PolicyClient``); ``GET /healthz`` answers
plain HTTP. See configs/serve.yaml and docs/deploy.md."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from robopolicy.cli.configstore import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="serve", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from robopolicy.deploy.serve_job import run_serve

    run_serve(OmegaConf.to_object(cfg))


def main() -> None:
    from robopolicy.deploy.serve_job import ServeJobConfig

    ConfigStore.instance().store(name="serve_schema", node=ServeJobConfig)
    _main()


if __name__ == "__main__":
    main()
