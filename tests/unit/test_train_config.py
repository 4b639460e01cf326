"""The Hydra configuration: groups compose into the typed schema; wrong keys/values are refused."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from robopolicy.cli.configstore import CONFIG_DIR, register_configs
from robopolicy.train.config import TrainConfig


def _compose(*overrides):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_defaults_compose_to_the_typed_schema():
    cfg = OmegaConf.to_object(_compose())
    assert isinstance(cfg, TrainConfig)
    assert cfg.env == "pushblock" and cfg.obs == "state"
    assert type(cfg.policy).__name__ == "DiffusionConfig" and cfg.policy.encoder.image_backbone == "resnet18_gn"


def test_overrides_read_like_a_sentence():
    cfg = OmegaConf.to_object(_compose("policy=sdp", "env=metaworld/mt1/push-v3", "obs=image",
                                       "encoder=efficientnet_lite0"))
    assert cfg.env == "metaworld/mt1/push-v3" and cfg.obs == "image"
    assert type(cfg.policy).__name__ == "SDPConfig"
    assert cfg.policy.encoder.image_backbone == "efficientnet_lite0" and cfg.policy.encoder.pretrained
    # the tokenizer group lands in the policy's config (Diffusion Policy itself refuses discrete)
    assert _compose("tokenizer=discrete").policy.action_tokenizer.kind == "discrete"
    with pytest.raises(ValueError, match="continuous"):
        OmegaConf.to_object(_compose("tokenizer=discrete"))


@pytest.mark.parametrize("override", ["policy.bogus=1", "steps=abc", "policy=nope", "encoder=nope", "bogus=1"])
def test_wrong_key_or_value_is_refused(override):
    with pytest.raises((ConfigCompositionException, Exception)) as e:
        OmegaConf.to_object(_compose(override))
    assert any(w in str(e.value) for w in ("bogus", "abc", "nope")), str(e.value)


@pytest.mark.parametrize("override,word", [("eval.episodes=-1", "episodes"), ("eval.n_envs=0", "n_envs"),
                                           ("eval.scheduler=nope", "scheduler")])
def test_bad_eval_settings_fail_before_training(override, word):
    with pytest.raises(Exception) as e:
        OmegaConf.to_object(_compose(override))
    assert word in str(e.value), str(e.value)
    assert OmegaConf.to_object(_compose("eval.episodes=0")).eval.episodes == 0  # 0 = train only
