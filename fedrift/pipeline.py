"""Start, supervise and stop the whole pipeline as processes: one Faust worker per stream
processor (each connects as its own role), and one model-host process per replica. Used by
``fedrift run``, the integration tests and the benchmarks. Before the hosts start it writes the
roster of their identities (``fedrift.roster``) unless one is configured, so hosts and the
aggregator trust only those keys.

A child that dies is restarted with exponential backoff (its restarts are counted for the
progress line); ``stop`` sends SIGTERM to every child and SIGKILL to any still alive after the
grace period; and every child gets SIGKILL from the kernel if this process dies first
(``PR_SET_PDEATHSIG``), so a failed or killed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedrift.access import PROCESSORS
from fedrift.config import ENV, Settings, to_env
from fedrift.roster import write_roster

PR_SET_PDEATHSIG = 1


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(to_env(settings))
    env["FEDRIFT_BOOTSTRAP_SERVERS"] = settings.bootstrap
    return env


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux). A parent that died
    before this call (while the child was still starting) is caught by ``parent_pid``: the child
    has been handed to another parent by then, and exits."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: stop() still cleans up
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


@dataclass
class Child:
    args: list[str]
    proc: subprocess.Popen
    restarts: int = 0
    restart_at: float | None = None  # when a dead child is due to be started again


class CrashLoop(RuntimeError):
    """A child kept dying: restarting it again would only hide the fault."""


@dataclass
class Pipeline:
    settings: Settings
    log_dir: Path
    max_restarts: int = 10
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        return {name: c.proc for name, c in self.children.items()}

    def ready_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.ready"

    def _popen(self, name: str, args: list[str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ready_file(name).unlink(missing_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "fedrift.cli", *args, "--ready-file", str(self.ready_file(name))],
                env=settings_env(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
            )

    def _spawn(self, name: str, *args: str) -> None:
        self.children[name] = Child(list(args), self._popen(name, list(args)))

    def start(self) -> Pipeline:
        if not self.settings.host_roster:  # every host's identity is on this machine: name them all
            s = self.settings
            path = write_roster(s, s.home / "hosts" / f"{s.topic_prefix}roster.json")
            self.settings = dataclasses.replace(self.settings, host_roster=str(path))
        for processor in PROCESSORS:  # each as its own principal
            self._spawn(f"streams-{processor}", "streams", "--processors", processor)
        for model in self.settings.models:
            for r in range(self.settings.replicas):
                self.start_host(model, r)
        return self

    def start_host(self, model: str, replica: int) -> None:
        self._spawn(f"host-{model}-{replica}", "host", "--model", model, "--replica", str(replica))

    def kill(self, name: str) -> None:
        """SIGKILL one child (a fault test); ``supervise`` restarts it."""
        self.children[name].proc.kill()
        self.children[name].proc.wait()

    def stop_process(self, name: str, grace: float = 20.0) -> None:
        """Stop one child for good (a fault test's departed host): no longer supervised. With
        ``grace`` 0 it is SIGKILLed at once, mid-whatever it was doing."""
        proc = self.children.pop(name).proc
        if grace <= 0:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def supervise(self) -> dict[str, int]:
        """Restart dead children whose backoff is over; return the restarts per child so far."""
        now = time.monotonic()
        for name, child in self.children.items():
            if child.proc.poll() is None:
                continue
            if child.restart_at is None:
                if child.restarts >= self.max_restarts:
                    tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2500:]
                    raise CrashLoop(f"{name} exited {child.proc.returncode} after {child.restarts} restarts:\n{tail}")
                child.restart_at = now + min(0.5 * 2**child.restarts, 30.0)
            elif now >= child.restart_at:
                child.restarts += 1
                child.restart_at = None
                child.proc = self._popen(name, child.args)
        return {name: c.restarts for name, c in self.children.items() if c.restarts}

    def check(self) -> None:
        """Supervise; raises ``CrashLoop`` for a child that keeps dying."""
        self.supervise()

    def all_ready(self) -> bool:
        return all(c.proc.poll() is None and self.ready_file(n).exists() for n, c in self.children.items())

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.all_ready():
            self.supervise()
            if time.monotonic() > deadline:
                waiting = [n for n in self.children if not self.ready_file(n).exists()]
                raise TimeoutError(f"pipeline not ready after {timeout:.0f}s: {waiting}; logs in {self.log_dir}")
            time.sleep(0.2)

    def stop(self, grace: float = 15.0) -> None:
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
