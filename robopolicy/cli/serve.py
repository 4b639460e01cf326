"""``robopolicy-serve checkpoint=<path> port=8765``: serve a checkpoint over websocket (msgpack +
numpy) to robot-side clients (``robopolicy.deploy.client.PolicyClient``); ``GET /healthz`` answers
plain HTTP. See configs/serve.yaml and docs/deploy.md."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from robopolicy.cli.configstore import CONFIG_DIR
from robopolicy.cli.errors import config_errors

USAGE = """\
robopolicy-serve checkpoint=<run or step folder> [host=127.0.0.1] [port=8765] [key=value ...]:
serve a checkpoint to robot-side clients over websocket (docs/deploy.md)."""


@hydra.main(config_path=CONFIG_DIR, config_name="serve", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from robopolicy.config_utils import to_object
    from robopolicy.deploy.serve_job import run_serve
    from robopolicy.train.checkpoint import resolve_checkpoint

    with config_errors():
        job = to_object(cfg)
        resolve_checkpoint(job.checkpoint)
    run_serve(job)


def main() -> None:
    from hydra.core.config_store import ConfigStore

    from robopolicy.cli.help import register_help
    from robopolicy.deploy.serve_job import ServeJobConfig

    ConfigStore.instance().store(name="serve_schema", node=ServeJobConfig)
    register_help("robopolicy-serve", USAGE, ServeJobConfig)
    _main()


if __name__ == "__main__":
    main()
