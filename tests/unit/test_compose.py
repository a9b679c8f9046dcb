"""docker-compose.yml cannot run here (no Docker engine), so check it against the real CLI and settings."""

from pathlib import Path

import yaml

from fedrift.cli import build_parser
from fedrift.config import ENV, REPO_ROOT


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def test_every_fedrift_service_runs_a_real_subcommand_with_real_settings():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    fedrift = {n: s for n, s in services.items() if "build" in s}
    assert fedrift, "no fedrift services"
    for name, svc in fedrift.items():
        assert (REPO_ROOT / svc["build"]["dockerfile"]).is_file()
        assert svc["command"][0] in _subcommands(), name
        build_parser().parse_args(svc["command"])  # exits (fails the test) on a bad argument
        unknown = set(svc.get("environment", {})) - set(ENV)
        assert not unknown, f"{name}: unknown settings {unknown}"
    assert "kafka" in services and services["kafka"]["image"].startswith("apache/kafka")


def test_dockerfile_copies_every_package():
    text = (REPO_ROOT / "infra" / "Dockerfile").read_text()
    for pkg in ("fedrift", "streams", "schemas", "agents", "infra"):
        assert f"COPY {pkg} " in text and Path(REPO_ROOT / pkg).is_dir()


def test_every_replica_has_a_host_with_its_own_state_and_the_worker_all_processors():
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    hosts = {n: s for n, s in services.items() if s.get("command", [None])[0] == "host"}
    env = services["topics"]["environment"]
    models, replicas = env["FEDRIFT_MODELS"].split(","), int(env["FEDRIFT_REPLICAS"])
    assert {(s["command"][2], s["command"][4]) for s in hosts.values()} == {
        (m, str(r)) for m in models for r in range(replicas)
    }
    assert all(s["environment"]["FEDRIFT_HOME"] in s["volumes"][0] for s in hosts.values())
    assert services["streams"]["command"] == ["streams", "--processors", "all"]
