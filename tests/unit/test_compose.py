"""docker-compose.yml cannot run here (no Docker engine), so check it against the real CLI and settings."""

from pathlib import Path

import yaml

from agents import keys as host_keys
from fedrift.access import PROCESSORS
from fedrift.cli import build_parser
from fedrift.config import ENV, REPO_ROOT, Settings
from fedrift.roster import identity_path, load_roster, write_roster
from infra.container import write_container_broker


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


def test_every_replica_has_a_host_with_its_own_state_and_every_processor_a_worker():
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    hosts = {n: s for n, s in services.items() if s.get("command", [None])[0] == "host"}
    env = services["topics"]["environment"]
    models, replicas = env["FEDRIFT_MODELS"].split(","), int(env["FEDRIFT_REPLICAS"])
    assert {(s["command"][2], s["command"][4]) for s in hosts.values()} == {
        (m, str(r)) for m in models for r in range(replicas)
    }
    assert all(s["environment"]["FEDRIFT_HOME"] in s["volumes"][0] for s in hosts.values())
    workers = [s["command"] for s in services.values() if s.get("command", [None])[0] == "streams"]
    assert sorted(workers) == sorted(["streams", "--processors", p] for p in PROCESSORS)


def test_the_broker_is_secure_and_publishes_nothing():
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    assert not any("ports" in s for s in services.values())
    assert services["security"]["command"][:2] == ["kafka", "configure"]
    assert services["kafka"]["entrypoint"][-1] == "/security/start-kafka.sh"
    assert services["topics"]["command"] == ["topics", "create", "--bundles"]
    for name, svc in services.items():
        if "FEDRIFT_BOOTSTRAP_SERVERS" in svc.get("environment", {}):
            assert svc["environment"]["FEDRIFT_SECURITY_PROTOCOL"] == "SASL_SSL", name


def _role(svc: dict) -> str:
    command = svc["command"]
    return {"streams": lambda: command[2], "host": lambda: f"host-{command[2]}",
            "produce": lambda: "client"}[command[0]]()


def test_each_service_holds_only_its_roles_secrets_and_each_host_its_own_state():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = {n: s for n, s in compose["services"].items() if s.get("command", [None])[0] in
                ("streams", "host", "produce")}
    assert len(services) == 4 + 12 + 1
    for name, svc in services.items():
        mounts = [v for v in svc["volumes"] if isinstance(v, dict) and v["source"] == "security"]
        assert mounts == [{"type": "volume", "source": "security", "target": "/creds", "read_only": True,
                           "volume": {"subpath": f"bundles/{_role(svc)}"}}], name
        assert not any(isinstance(v, str) and v.startswith("security") for v in svc["volumes"]), name
        assert svc["environment"]["FEDRIFT_CREDENTIALS_DIR"] == "/creds", name
    states = [v for s in services.values() for v in s["volumes"] if isinstance(v, str)]
    assert len(states) == 12 == len({v.split(":")[0] for v in states})
    assert set(compose["volumes"]) == {"security", "identities"} | {v.split(":")[0] for v in states}


def test_the_container_broker_gets_tls_scram_and_acls_only(tmp_path):
    written = {p.name: p for p in write_container_broker(tmp_path, host="kafka")}
    props = dict(line.split("=", 1) for line in written["server.properties"].read_text().splitlines())
    assert props["listeners"] == "SASL_SSL://0.0.0.0:9092,BROKER://0.0.0.0:10092,CONTROLLER://0.0.0.0:9093"
    assert props["advertised.listeners"] == "SASL_SSL://kafka:9092,BROKER://kafka:10092"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,BROKER:SSL,CONTROLLER:SSL"
    assert props["listener.name.broker.ssl.client.auth"] == "required" and "password" not in str(props)
    assert not (tmp_path / "ca.key").exists()  # nothing more is signed: nobody can mint a broker
    assert props["allow.everyone.if.no.acl.found"] == "false" and props["auto.create.topics.enable"] == "false"
    assert "--add-scram" in written["start-kafka.sh"].read_text()
    assert all(p.stat().st_mode & 0o077 == 0 for p in written.values())
    again = {p.name for p in write_container_broker(tmp_path, host="kafka")}
    assert "cluster.id" not in again  # a second run keeps the cluster's identity


def _identity_mounts(svc: dict) -> dict[str, str]:
    """target -> subpath of the service's mounts of the ``identities`` volume (all read-only)."""
    mounts = [v for v in svc.get("volumes", []) if isinstance(v, dict) and v["source"] == "identities"]
    assert all(v["read_only"] for v in mounts)
    return {v["target"]: v["volume"]["subpath"] for v in mounts}


def test_each_host_reads_its_own_identity_alone_and_trusts_the_roster(tmp_path):
    """The ``roster`` service writes every identity (``--split``) and the roster; each host mounts
    only its own identity's directory, and there finds the key the roster lists for it."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    roster_svc = services["roster"]
    args = build_parser().parse_args(roster_svc["command"])
    written_root = roster_svc["environment"]["FEDRIFT_IDENTITY_DIR"]
    assert roster_svc["volumes"] == [f"identities:{written_root}"] and args.split
    roster_path = Path(args.out)
    volume = tmp_path / "identities"  # the volume, as the roster service leaves it
    env = roster_svc["environment"]
    settings = Settings(identity_dir=str(volume), models=tuple(env["FEDRIFT_MODELS"].split(",")),
                        replicas=int(env["FEDRIFT_REPLICAS"]), topic_prefix=env["FEDRIFT_TOPIC_PREFIX"])
    write_roster(settings, volume / roster_path.relative_to(written_root), split=True)
    hosts = {n: s for n, s in services.items() if s.get("command", [None])[0] == "host"}
    for name, svc in hosts.items():
        host = f"{svc['command'][2]}-{svc['command'][4]}"
        env, mounts = svc["environment"], _identity_mounts(svc)
        assert mounts == {env["FEDRIFT_IDENTITY_DIR"]: host, "/roster": "roster"}, name
        assert svc["depends_on"]["roster"] == {"condition": "service_completed_successfully"}
        seen = Settings(identity_dir=str(volume / mounts[env["FEDRIFT_IDENTITY_DIR"]]),
                        topic_prefix=env["FEDRIFT_TOPIC_PREFIX"])
        roster_file = volume / mounts["/roster"] / Path(env["FEDRIFT_HOST_ROSTER"]).relative_to("/roster")
        assert identity_path(seen, host).is_file(), name  # the host finds the identity the roster lists
        assert host_keys.load_or_create(identity_path(seen, host)).verify_key == load_roster(roster_file)[host][0]
    aggregator = services["streams-aggregator"]
    assert _identity_mounts(aggregator) == {"/roster": "roster"}
    assert aggregator["environment"]["FEDRIFT_HOST_ROSTER"] == "/roster/roster.json"
    others = [s for n, s in services.items() if n not in hosts and n not in ("roster", "streams-aggregator")]
    assert not any(_identity_mounts(s) for s in others)
