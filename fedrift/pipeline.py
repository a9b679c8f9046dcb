"""Start and stop the whole pipeline as processes: one Faust worker with every stream processor,
and one model-host process per replica. Used by ``fedrift run``, the end-to-end test and the
throughput benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedrift.config import ENV, Settings, to_env


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(to_env(settings))
    env["FEDRIFT_BOOTSTRAP_SERVERS"] = settings.bootstrap
    return env


@dataclass
class Pipeline:
    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def _spawn(self, name: str, *args: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "wb") as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "fedrift.cli", *args],
                env=settings_env(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> Pipeline:
        self._spawn("streams", "streams", "--processors", "all")
        for model in self.settings.models:
            for r in range(self.settings.replicas):
                self.start_host(model, r)
        return self

    def start_host(self, model: str, replica: int) -> None:
        """Start (or, in a fault test, restart) one model host as ``host-<model>-<replica>``."""
        self._spawn(f"host-{model}-{replica}", "host", "--model", model, "--replica", str(replica))

    def check(self) -> None:
        """Raise if a process died, with the tail of its log."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2500:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop_process(self, name: str, timeout: float = 20.0) -> None:
        """Stop one process (a fault test's crashed host); ``check`` no longer watches it."""
        proc = self.processes.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
