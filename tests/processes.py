"""Real processes for integration tests and benchmarks: a private redis-server and Celery workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` on a free port, in its own folder. Nothing is persisted unless
    ``appendonly``: then every write goes to an append-only file there (fsynced every second, as
    docs/operations.md recommends for the main instance), so queued messages, chord state and
    progress survive ``restart``."""

    def __init__(self, folder: Path, appendonly: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.folder = folder
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers (after loading its append-only file)."""
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence],
            cwd=self.folder,
            stdout=(self.folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                client.ping()  # BusyLoadingError, a ConnectionError, while the file loads
                return
            except redis.ConnectionError:
                time.sleep(0.05)
            finally:
                client.close()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def stop(self) -> None:
        """Shut the server down (SIGTERM: it writes its append-only file out first)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def restart(self, downtime: float) -> None:
        """Stop the server, leave the port closed for ``downtime`` seconds, start it again on
        the same port (with the data of its append-only file when ``appendonly``)."""
        self.stop()
        time.sleep(downtime)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


class Workers:
    """``celery worker`` processes (prefork) running ``app`` (the tests' app by default)."""

    def __init__(
        self, env: dict[str, str], log: Path, concurrency: int = 2, name: str = "w1", app: str = "tests.worker_app"
    ) -> None:
        # Readiness is read from the worker's INFO line "<name>@<host> ready.", whatever level
        # the caller's own process logs at.
        self.env = {**os.environ, **env, "DJANGO_LOG_LEVEL": "INFO"}
        self.app = app
        self.log = log
        self.concurrency = concurrency
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", self.app, "worker",
                "--concurrency", str(self.concurrency), "--pool", "prefork", "--loglevel", "INFO",
                "--hostname", f"{self.name}@%h", "--without-gossip", "--without-mingle",
            ],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.process.returncode}; see {self.log}")
            log = self.log.read_text(errors="replace")
            if f"{self.name}@" in log and " ready." in log and len(self.children()) >= self.concurrency:
                return
            time.sleep(0.1)
        self.stop()  # not left running behind the caller's failure
        raise RuntimeError(f"celery worker not ready after {timeout} s; see {self.log}")

    def children(self) -> list[int]:
        """PIDs of the pool's child processes (those that run tasks)."""
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]

    def peak_rss_mb(self) -> float:
        """The largest peak resident set (VmHWM) among the worker's processes, in MB."""
        assert self.process is not None
        peaks = []
        for pid in [self.process.pid, *self.children()]:
            status = Path(f"/proc/{pid}/status").read_text()
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks.append(kib / 1024.0)
        return max(peaks)

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the worker's main process and its pool processes at once, as a lost machine
        or the OOM killer would: nothing is acknowledged or put back."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


class Beat:
    """``celery beat`` sending the schedule of ``app`` (the watchdog every
    TECHNIC_WATCHDOG_INTERVAL seconds, the cache warmer) to its broker."""

    def __init__(self, env: dict[str, str], folder: Path, app: str = "tests.worker_app") -> None:
        self.env = {**os.environ, **env, "DJANGO_LOG_LEVEL": "INFO"}
        self.app = app
        self.folder = folder
        self.log = folder / "beat.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app, "beat", "--loglevel", "INFO",
             "--schedule", str(self.folder / "beat-schedule")],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery beat exited with {self.process.returncode}; see {self.log}")
            if "beat: Starting" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"celery beat not started after {timeout} s; see {self.log}")

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None


ASGI_APPLICATION = "technic_project.asgi:application"


class WebServer:
    """The ASGI application under daphne (``technic_project.server``), as the Procfile's ``web``
    process runs it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "technic_project.server", "-b", "127.0.0.1", "-p", str(self.port), ASGI_APPLICATION],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne not listening after {timeout} s; see {self.log}")

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None


def stop_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process group ``process`` leads, SIGKILL it if it lingers."""
    if process is None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for worker processes pointing at the database this test process uses."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    if engine.endswith("postgresql"):
        user = settings_dict.get("USER") or ""
        password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        host = settings_dict.get("HOST") or "localhost"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{settings_dict['NAME']}"
    raise RuntimeError(f"integration tests do not support the database engine {engine}")
