"""``fedrift run`` supervises what it starts: a killed child is restarted (and the restart shows
in the progress line); SIGTERM to ``fedrift run`` stops every child; if ``fedrift run`` itself is
SIGKILLed, the kernel takes its children down with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fedrift.access import PROCESSORS

pytestmark = pytest.mark.integration


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the live processes whose parent is ``pid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry.name)] = cmd
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


CHILDREN = len(PROCESSORS) + 1  # a Faust worker per processor, one host


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _start_run(kafka, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDRIFT_")}
    env.update(
        FEDRIFT_BOOTSTRAP_SERVERS=kafka.bootstrap,
        FEDRIFT_CREDENTIALS_DIR=str(kafka.security.directory),
        FEDRIFT_SSL_CA_FILE=str(kafka.security.ca.cert),
        FEDRIFT_HOME=str(tmp_path / "home"),
        FEDRIFT_TOPIC_PREFIX=f"s{uuid.uuid4().hex[:8]}.",
        FEDRIFT_MODELS="gnb",
        FEDRIFT_REPLICAS="1",
    )
    err = tmp_path / "run.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedrift.cli", "run", "--n", "200000", "--rate", "50"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err.open("wb"),
    )
    ready = lambda: len(list((tmp_path / "home" / "runs").glob("*/logs/*.ready"))) == CHILDREN  # noqa: E731
    _wait(ready, 120, "the run's children to be ready")
    return proc, err


def test_a_killed_child_is_restarted_and_sigterm_stops_everything(kafka, tmp_path):
    proc, err = _start_run(kafka, tmp_path)
    try:
        children = _children(proc.pid)
        host = next(pid for pid, cmd in children.items() if " host " in cmd)
        os.kill(host, signal.SIGKILL)
        _wait(lambda: "restarts host-gnb-0=1" in err.read_text(errors="replace"), 60, "the restart in the progress")
        again = _children(proc.pid)
        assert host not in again and any(" host " in cmd for cmd in again.values())
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        gone = set(children) | set(again)
        _wait(lambda: not any(_alive(p) for p in gone), 30, "every child to stop")
    finally:
        proc.kill()
        proc.wait()


def test_children_die_with_a_killed_run(kafka, tmp_path):
    proc, _ = _start_run(kafka, tmp_path)
    children = _children(proc.pid)
    assert len(children) == CHILDREN
    proc.kill()
    proc.wait()
    _wait(lambda: not any(_alive(p) for p in children), 30, "the orphaned children to die")
