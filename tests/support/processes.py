"""Real processes for integration tests and benchmarks: a private redis-server and Celery workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[2]


# Short timeouts in the relation the defaults keep (time limits < visibility timeout, and the
# visibility timeout plus two redelivery sweeps of 1 s < stall limit), so a dead worker's batches
# come back after 10 s and a scan with lost ones is resumed after 9 s (time limit + sweep); the
# watchdog (beat) looks every second.
SHORT_TIMEOUTS = {
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "CELERY_TASK_SOFT_TIME_LIMIT": "7",
    "CELERY_TASK_TIME_LIMIT": "8",
    "TECHNIC_SCAN_STALL_SECONDS": "20",
    "TECHNIC_WATCHDOG_INTERVAL": "1",
}


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
        self,
        env: dict[str, str],
        log: Path,
        concurrency: int = 2,
        name: str = "w1",
        app: str = "tests.support.worker_app",
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
        def ready(process: subprocess.Popen[bytes], log: str) -> bool:
            return f"{self.name}@" in log and " ready." in log and len(_children(process.pid)) >= self.concurrency

        self.process = _celery(
            [
                self.app, "worker", "--concurrency", str(self.concurrency), "--pool", "prefork", "--loglevel", "INFO",
                "--hostname", f"{self.name}@%h", "--without-gossip", "--without-mingle",
            ],
            self.env, self.log, ready, "celery worker", timeout,
        )  # fmt: skip

    def children(self) -> list[int]:
        """PIDs of the pool's child processes (those that run tasks)."""
        assert self.process is not None
        return _children(self.process.pid)

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

    def __init__(self, env: dict[str, str], folder: Path, app: str = "tests.support.worker_app") -> None:
        self.env = {**os.environ, **env, "DJANGO_LOG_LEVEL": "INFO"}
        self.app = app
        self.folder = folder
        self.log = folder / "beat.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        args = [self.app, "beat", "--loglevel", "INFO", "--schedule", str(self.folder / "beat-schedule")]
        self.process = _celery(args, self.env, self.log, lambda _, log: "beat: Starting" in log, "celery beat", timeout)

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


def _celery(
    args: list[str],
    env: dict[str, str],
    log: Path,
    ready: Callable[[subprocess.Popen[bytes], str], bool],
    what: str,
    timeout: float,
) -> subprocess.Popen[bytes]:
    """``celery -A <args>`` in a process group of its own, logging to ``log``, once ``ready``
    says so of the process and the log's text; stopped again (and RuntimeError) if it exits or
    is not ready in ``timeout`` seconds."""
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", *args],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        if ready(process, log.read_text(errors="replace")):
            return process
        time.sleep(0.1)
    stop_group(process)  # not left running behind the caller's failure
    raise RuntimeError(f"{what} not ready after {timeout} s; see {log}")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def scan_env(redis_url: str, demo_symbols: int, **extra: str) -> dict[str, str]:
    """The environment of processes of a test's own on ``redis_url`` and the test database."""
    from django.db import connection

    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url(connection.settings_dict),
        "DJANGO_DEBUG": "false",
        "TECHNIC_DEMO_SYMBOLS": str(demo_symbols),
        **extra,
    }


def start_scan_from(env: dict[str, str], batch_size: int) -> str:
    """Create and enqueue a scan of every demo symbol from a process with ``env`` (this
    process's Celery app and Redis clients may point elsewhere); returns its id."""
    code = (
        "import django; django.setup()\n"
        "from engine.config import ScanConfig\n"
        "from scanner.services import scan_create\n"
        f"print(scan_create(owner=None, config=ScanConfig(), batch_size={batch_size}).id)\n"
    )
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "technic_project.settings"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


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


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python manage.py scan <args>`` as a user runs it, in a subprocess."""
    full_env = {**os.environ, "DJANGO_SECRET_KEY": "test", "DJANGO_DEBUG": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "manage.py", "scan", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
