import dataclasses

from fedrift.config import Settings
from fedrift.pipeline import settings_env


def test_children_get_every_setting(tmp_path):
    settings = Settings(models=("a", "b"), hpo_round_timeout_s=7.5, pending_labels=60)
    env = settings_env(settings)
    back = Settings.from_env({k: v for k, v in env.items() if k.startswith("FEDRIFT_")})
    assert back == dataclasses.replace(settings, bootstrap_servers=settings.bootstrap)  # children never start a broker
