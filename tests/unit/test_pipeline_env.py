import dataclasses

from fedrift.config import Settings
from fedrift.pipeline import Pipeline, settings_env


def test_children_get_every_setting_and_only_hosts_get_the_mask_secret(tmp_path):
    settings = Settings(models=("a", "b"), hpo_round_timeout_s=7.5, label_ttl_s=60.0, mask_secret="s3")
    worker, host = settings_env(settings), settings_env(settings, with_mask_secret=True)
    assert "FEDRIFT_MASK_SECRET" not in worker and host["FEDRIFT_MASK_SECRET"] == "s3"
    back = Settings.from_env({k: v for k, v in host.items() if k.startswith("FEDRIFT_")})
    assert back == dataclasses.replace(settings, bootstrap_servers=settings.bootstrap)  # children never start a broker


def test_a_pipeline_without_a_secret_makes_one_per_run(tmp_path):
    a, b = Pipeline(Settings(), tmp_path), Pipeline(Settings(), tmp_path)
    assert len(a.settings.mask_secret) == 32 and a.settings.mask_secret != b.settings.mask_secret
    assert "mask_secret" not in repr(a.settings)
