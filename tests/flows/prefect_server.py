"""A real Prefect server, its command line and a worker, as child processes of a test: the
server on a free loopback port with its own PREFECT_HOME, each long-lived process in its own
process group, and everything stopped (terminate, then kill) when the test ends. Each
process's output goes to a file, printed when the test fails. Linux: /proc is read."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.flows.processes import alive, group_members, wait_until_gone

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PREFECT = VENV_BIN / "prefect"
# Generous: a real server takes 10-20 s to start on an idle 2-core machine, much more when
# other test processes share it.
STARTUP_SECONDS = 240
COMMAND_SECONDS = 300
STOP_SECONDS = 30
OUTPUT_SHOWN = 6000  # characters of each process's output printed on failure
# Every process the test starts, and every process those start (the worker runs each flow run
# in a session of its own), carries this variable: the teardown finds them all by it.
MARK = "CHARTAUDIT_TEST_PREFECT_SERVER"


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-OUTPUT_SHOWN:]


@dataclass
class PrefectSession:
    """The server, and whatever the test starts against it, under ``folder``. Use it as a
    context manager: leaving it stops every process started, and ``left_behind`` lists those
    still running afterwards (none, unless stopping failed)."""

    folder: Path
    port: int = 0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    children: list[Child] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # the CLI commands run, with output
    left_behind: list[int] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process: the venv first on PATH, a private PREFECT_HOME,
        the server's API, no telemetry, loopback never through a proxy; no PREFECT_* setting
        of the caller's (a profile or home of its own) leaks in."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY")]))
        return {
            **inherited,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PREFECT_HOME": str(self.folder / "prefect-home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            MARK: self.token,
            **extra,
        }

    def __enter__(self) -> PrefectSession:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_server()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            print(self.report())  # pytest shows it with the failure
        self.left_behind = self.stop_all()
        if self.left_behind and exc_type is None:
            print(self.report())

    def _start_server(self, attempts: int = 3) -> None:
        """`prefect server start` on a free port; another port if the one chosen was taken
        meanwhile (the port is free when chosen, not reserved)."""
        for _ in range(attempts):
            self.port = free_port()
            server = self.start(
                "server",
                ["server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.folder,
                # Its scheduler looks for new deployments every 2 s, not every 60 s.
                PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
            )
            if wait_until_healthy(server, f"{self.api_url}/health"):
                return
            if "address already in use" not in server.output().lower():
                break
        raise AssertionError(f"the Prefect server did not start:\n{self.report()}")

    def start(self, name: str, args: list[str], cwd: Path, **extra_env: str) -> Child:
        """`prefect ARGS` as a long-lived child in a process group of its own."""
        log = self.folder / f"{name}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [str(PREFECT), *args],
                cwd=cwd,
                env=self.env(**extra_env),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def prefect(self, *args: str, cwd: Path, **extra_env: str) -> str:
        """`prefect ARGS` to its end; its output, or an AssertionError with it and the
        server's when it fails."""
        done = subprocess.run(
            [str(PREFECT), *args],
            cwd=cwd,
            env=self.env(**extra_env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            start_new_session=True,  # never in the test's own group (see stop_all)
        )
        output = done.stdout + done.stderr
        self.commands.append(f"$ prefect {' '.join(args)}  (exit {done.returncode})\n{output}")
        if done.returncode != 0:
            raise AssertionError(f"`prefect {' '.join(args)}` failed:\n{self.report()}")
        return output

    def stop(self, child: Child) -> list[int]:
        """Terminate the child's process group, kill what is left after STOP_SECONDS; the
        members still running after that."""
        group = child.process.pid  # a session leader: its pid is its group's id
        for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, STOP_SECONDS)):
            members = group_members(group)
            if not members:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            wait_until_gone(members, wait)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=STOP_SECONDS)  # reap it
        return group_members(group)

    def stop_all(self) -> list[int]:
        """Stop the children, latest first (the server last), then any marked process outside
        their groups (a flow run's own session); the processes left running."""
        left = [pid for child in reversed(self.children) for pid in self.stop(child)]
        for pid in marked_processes(self.token):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == os.getpgrp():  # never the test's own group
                    os.kill(pid, signal.SIGKILL)
                else:
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
        wait_until_gone(marked_processes(self.token), STOP_SECONDS)
        return sorted(set(left) | set(alive(marked_processes(self.token))))

    def report(self) -> str:
        parts = [f"--- {c.name} (exit {c.process.poll()}):\n{c.output()}" for c in self.children]
        parts += [f"--- {command}" for command in self.commands[-3:]]
        return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(server: Child, url: str) -> bool:
    """Poll the health endpoint until it answers true; False when the server exits first.
    The proxy settings of the environment are ignored (the server is on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(OSError), opener.open(url, timeout=5) as answer:
            if answer.status == 200 and answer.read().strip() == b"true":
                return True
        time.sleep(0.25)
    raise AssertionError(f"no answer from {url} in {STARTUP_SECONDS} s:\n{server.output()}")


def marked_processes(token: str) -> list[int]:
    """The processes whose environment carries this session's mark."""
    needle = f"{MARK}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
