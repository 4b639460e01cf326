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
    assert cfg.env == "metaworld/mt1/button-press-topdown-v3" and cfg.obs == "state"
    assert (cfg.episodes, cfg.steps) == (50, 2000)  # the README's main job
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


# --- keys added with + / ++ and invalid values: refused when the config is built -----------------
@pytest.mark.parametrize("override,key", [
    ("+policy.bogus=1", "policy.bogus"), ("++policy.bogus=1", "policy.bogus"), ("+bogus=1", "bogus"),
    ("++bogus=1", "bogus"), ("+eval.bogus=1", "eval.bogus"), ("+policy.noise.bogus=1", "policy.noise.bogus"),
])
def test_keys_added_with_plus_are_refused(override, key):
    """Hydra lets ``+key=`` add a key to a structured config; OmegaConf.to_object then drops it
    (or sets a stray attribute): the setting would be ignored without a word."""
    from robopolicy.config_utils import to_object

    cfg = _compose(override)  # composes: the check is ours, after composition
    with pytest.raises(ValueError, match=f"unknown config key {key}:"):
        to_object(cfg)


def test_plus_keys_are_checked_against_the_chosen_family():
    from robopolicy.config_utils import to_object

    with pytest.raises(ValueError, match="unknown config key policy.bogus: DDVLAConfig"):
        to_object(_compose("policy=ddvla", "+policy.bogus=2"))
    assert type(to_object(_compose("policy=ddvla")).policy).__name__ == "DDVLAConfig"


@pytest.mark.parametrize("override,message", [
    ("steps=0", "steps must be >= 1, got 0"), ("steps=-5", "steps must be >= 1, got -5"),
    ("batch_size=0", "batch_size must be >= 1"), ("lr=0", "lr must be > 0"), ("save_every=0", "save_every must be >= 1"),
    ("max_minutes=0", "max_minutes must be > 0"), ("log_every=0", "log_every must be >= 1"),
    ("warmup_steps=-1", "warmup_steps must be >= 0"), ("save_every_minutes=-1", "save_every_minutes must be >= 0"),
    ("obs=nope", "obs must be 'state' or 'image', got 'nope'"), ("env=nope", "env='nope' is not a task suite"),
    ("env=metaworld/mt1/pus-v3", "did you mean metaworld/mt1/push-v3"), ("device=gpu", "device must be auto"),
    ("precision=fp16", "precision must be 'fp32' or 'bf16'"),
])
def test_invalid_values_are_refused_when_the_config_is_built(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OmegaConf.to_object(_compose(override))


def test_direct_construction_is_checked_too():
    with pytest.raises(ValueError, match="steps must be >= 1, got 0; lr must be > 0, got -1"):
        TrainConfig(steps=0, lr=-1)
    cfg = TrainConfig(steps=1, warmup_steps=0, max_minutes=0.5, save_every_minutes=0, env="metaworld/mt10")
    assert cfg.save_every_minutes == 0 and TrainConfig().save_every_minutes == 5.0


@pytest.mark.parametrize("name,override", [("eval", "+bogus=1"), ("deploy", "+safety.bogus=1"),
                                           ("serve", "++bogus=1"), ("record", "+bogus=1")])
def test_other_jobs_refuse_keys_added_with_plus(name, override):
    from hydra.core.config_store import ConfigStore

    from robopolicy.cli.record import RecordConfig
    from robopolicy.config_utils import to_object
    from robopolicy.deploy.job import DeployJobConfig
    from robopolicy.deploy.serve_job import ServeJobConfig
    from robopolicy.eval.job import EvalJobConfig

    schema = {"eval": EvalJobConfig, "deploy": DeployJobConfig, "serve": ServeJobConfig, "record": RecordConfig}
    ConfigStore.instance().store(name=f"{name}_schema", node=schema[name])
    register_configs()  # the hydra/help option every configs/*.yaml selects
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(name, overrides=["checkpoint=x"] * (name in ("eval", "serve")) + [override])
    with pytest.raises(ValueError, match="unknown config key .*bogus"):
        to_object(cfg)
    # a dict-typed field takes any key (that is what it is for)
    if name == "eval":
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            ok = to_object(compose(name, overrides=["checkpoint=x", "+policy_overrides.decode_rounds=4"]))
        assert ok.policy_overrides == {"decode_rounds": 4}


def test_help_lists_every_field_with_its_doc_and_the_suites():
    """--help's page is built from the dataclass source (attribute docstrings), so a new field
    shows up with its doc without touching any YAML."""
    from hydra.core.global_hydra import GlobalHydra

    from robopolicy.cli.help import field_docs

    docs = dict(field_docs(TrainConfig))
    assert docs["save_every_minutes"].startswith("Also checkpoint once this many minutes")
    assert docs["eval.episodes"].startswith("Episodes per task") and "policy" in docs
    assert all(doc for doc in docs.values()), [k for k, d in docs.items() if not d]  # every field has one
    register_configs(full_help=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        template = compose("train", return_hydra_config=True).hydra.help.template
    assert "save_every_minutes" in template and "policy.noise.num_inference_steps" in template
    assert "metaworld/mt10" in template and "pick-place-v3" in template and "$CONFIG" in template
    register_configs()
