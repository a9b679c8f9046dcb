"""CLI errors are one clear line, not a traceback."""

import subprocess
import sys


def _run(*args, env_extra=None):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDRIFT_")} | (env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "fedrift.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_unreachable_broker_is_one_line():
    proc = _run("produce", "--stream", "sea", "--n", "5", "--quiet",
                env_extra={"FEDRIFT_BOOTSTRAP_SERVERS": "127.0.0.1:1", "FEDRIFT_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fedrift produce: no Kafka broker answered at 127.0.0.1:1")


def test_a_secure_cluster_without_credentials_is_one_line():
    proc = _run("topics", "create", env_extra={"FEDRIFT_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("fedrift topics: no credentials for role 'admin'")


def test_missing_data_file_and_bad_setting_are_one_line():
    proc = _run("produce", "--data", "/nonexistent.csv", env_extra={"FEDRIFT_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert proc.returncode == 2 and proc.stderr.strip() == "fedrift produce: no such data file: /nonexistent.csv"
    proc = _run("topics", "create", env_extra={"FEDRIFT_PARTITIONS": "many"})
    assert proc.returncode == 2 and "FEDRIFT_PARTITIONS='many': expected int" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_roster_writes_the_public_keys_of_the_hosts_under_home(tmp_path):
    import json

    out = tmp_path / "site.json"
    proc = _run("roster", "--out", str(out), "--hosts", "pa-0,pa-1", env_extra={"FEDRIFT_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    roster = json.loads(out.read_text())
    assert sorted(roster) == ["pa-0", "pa-1"] and set(roster["pa-0"]) == {"signing_key", "public_key"}
    assert (tmp_path / "hosts" / "pa-0.identity").stat().st_mode & 0o077 == 0  # the private half stays private
