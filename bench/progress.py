"""What live progress costs a scan, and how fast it reaches a client.

Sets up its own redis-server, a SQLite database, the ASGI server (daphne) and two workers of two
processes each, one with pushing on and one with ``TECHNIC_PROGRESS_PUSH=false``, of which only
one at a time takes tasks (Celery's ``add_consumer``/``cancel_consumer``). Then it scans the 505
real symbols (and, to show how the cost scales, 5,000 synthetic ones) in pairs of one scan per
mode, in alternating order, so that the machine's drifts fall on both modes alike:

* push on: 50 WebSocket clients connected to the scan before it starts, reading to the end;
* push off: no client is connected.

Either way the scan starts ``QUIET_SECONDS`` after the clients are connected (or would be).
Started at once after the 50 connections, a watched scan took 13-36 % longer than an unwatched
one over eight runs, though no process used CPU in between (daphne, this process and
redis-server measured idle from the last connection on); after 0.1 to 0.5 s of quiet, 3.5-14.5 %.
So it is not work the connections leave behind: probably the kernel's load tracking still
counting their burst when the workers wake. Pushing starts with the scan, inside the timed span
either way.

Each scan is timed from enqueue to the ``finished_at`` its worker records; the overhead is the
difference of the medians, with a 95 % confidence interval from resampling the pairs. Single
505-symbol scans vary a lot here (standard deviation about a quarter of the median): with 16
pairs the interval was 17 to 28 points wide, with 80 it is 10 to 12.

Where that time goes: each stage's median time per mode (from the scan rows), the CPU the web
process (daphne) spends from a watched scan's start until its last client has the terminal
message and has closed (read from ``/proc``), and the messages each client gets per scan.

Latency: for every message a client receives after the one sent on connect, receipt time minus
the snapshot's ``updated_at`` (stamped by the worker that built it; same machine, same clock).
The clients run in this process, on the same two cores.
Targets: overhead_pct <= 2, latency_p95_ms <= 50.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import completed_scan, django_with_own_redis, market_dir, report

CLIENTS = 50
MODES = ("on", "off")
# (label, pairs of scans): the target is on the 505 real symbols; the 5,000 synthetic ones show
# how the cost shrinks when a scan lasts seconds rather than a tenth of one.
SIZES = (("505", 80), ("5000", 4))
RESAMPLES = 2000
QUIET_SECONDS = 0.2


class Clients:
    """CLIENTS WebSocket connections to one scan, in an event loop on a thread of their own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.terminal = 0
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.connected.wait(30):
            sys.exit("the WebSocket clients did not connect within 30 s")

    def join(self) -> None:
        self._thread.join(60)
        if self._thread.is_alive():
            sys.exit("a WebSocket client did not get its terminal message within 60 s")

    async def _run(self) -> None:
        import websockets

        ready = 0

        async def client() -> None:
            nonlocal ready
            async with websockets.connect(
                self.url, origin=websockets.Origin("http://127.0.0.1"), open_timeout=20
            ) as ws:
                await ws.recv()  # the snapshot sent on connect
                ready += 1
                if ready == CLIENTS:
                    self.connected.set()
                async for raw in ws:
                    received = time.time()
                    message = json.loads(raw)
                    self.latencies_ms.append((received - message["updated_at"]) * 1000.0)
                    self.terminal += message["type"] == "terminal"

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="technic-bench-"))
    redis_server = django_with_own_redis(work, 5000)
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    from tests.support.processes import WebServer, Workers

    user = User.objects.create_user("bench")
    token = Token.objects.create(user=user).key
    env = {"REDIS_URL": redis_server.url, "DATABASE_URL": os.environ["DATABASE_URL"], "TECHNIC_DEMO_SYMBOLS": "5000"}
    # the CLIENTS are one user's: allow them all (a user may hold 20 live connections by default)
    web = WebServer({**env, "TECHNIC_MAX_LIVE_CONNECTIONS": str(CLIENTS)}, work / "daphne.log")
    web.start()
    seconds: dict[tuple[str, str], list[float]] = {(size, mode): [] for size, _ in SIZES for mode in MODES}
    latencies: list[float] = []
    web_cpu: list[float] = []
    stages: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    pools = {
        mode: Workers(
            {**env, "TECHNIC_PROGRESS_PUSH": "true" if mode == "on" else "false"},
            work / f"worker-{mode}.log",
            name=f"push-{mode}",
            app="technic_project",
        )
        for mode in MODES
    }
    try:
        for pool in pools.values():
            pool.start()
        for mode in MODES:
            _serve(mode)
            for size, _ in SIZES:
                _scan(size, user, token, web, clients=False)  # warm-up: each worker process loads the data
        for size, pairs in SIZES:
            for n in range(pairs):
                for mode in MODES if n % 2 == 0 else MODES[::-1]:
                    _serve(mode)
                    elapsed, lat, cpu, stage_seconds = _scan(size, user, token, web, clients=mode == "on")
                    seconds[size, mode].append(elapsed)
                    if size == "505":
                        stages[mode].append(stage_seconds)
                    if size == "505" and mode == "on":
                        latencies += lat
                        web_cpu.append(cpu)
    finally:
        for pool in pools.values():
            pool.stop()
        web.stop()
        redis_server.stop()
    median = {key: statistics.median(values) for key, values in seconds.items()}
    latencies.sort()
    figures = {
        "symbols": 505,
        "clients": CLIENTS,
        "scans_per_mode": len(seconds["505", "on"]),
        "median_seconds_push_on": round(median["505", "on"], 4),
        "median_seconds_push_off": round(median["505", "off"], 4),
        "overhead_pct": round(_overhead_pct(seconds["505", "on"], seconds["505", "off"]), 2),
        "overhead_pct_ci95": _confidence_interval(seconds["505", "on"], seconds["505", "off"]),
        "median_seconds_5000_push_on": round(median["5000", "on"], 4),
        "median_seconds_5000_push_off": round(median["5000", "off"], 4),
        "overhead_pct_5000": round(_overhead_pct(seconds["5000", "on"], seconds["5000", "off"]), 2),
        "overhead_pct_5000_ci95": _confidence_interval(seconds["5000", "on"], seconds["5000", "off"]),
        **{
            f"stage_ms_push_{mode}": {
                stage: round(1000.0 * statistics.median(s[stage] for s in stages[mode]), 1) for stage in stages[mode][0]
            }
            for mode in MODES
        },
        "messages_received": len(latencies),
        "messages_per_client_per_scan": round(len(latencies) / len(web_cpu) / CLIENTS, 1),
        "web_cpu_ms_per_watched_scan": round(1000.0 * statistics.fmean(web_cpu), 1),  # a mean: /proc counts 10 ms ticks
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "latency_max_ms": round(latencies[-1], 1),
        "targets": {"overhead_pct": "<= 2", "latency_p95_ms": "<= 50"},
    }
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    report("progress", figures)


def _overhead_pct(on: list[float], off: list[float]) -> float:
    return 100.0 * (statistics.median(on) - statistics.median(off)) / statistics.median(off)


def _confidence_interval(on: list[float], off: list[float]) -> list[float]:
    """95 % bootstrap interval of ``_overhead_pct``, resampling whole pairs (scan i of each
    mode ran back to back, so a pair shares the machine's state)."""
    rng = random.Random(0)
    pairs = list(zip(on, off, strict=True))
    values = sorted(
        _overhead_pct(*map(list, zip(*rng.choices(pairs, k=len(pairs)), strict=True))) for _ in range(RESAMPLES)
    )
    return [round(values[int(0.025 * RESAMPLES)], 1), round(values[int(0.975 * RESAMPLES)], 1)]


def _serve(mode: str) -> None:
    """From now on only the ``mode`` worker takes tasks (none is queued when this is called)."""
    from technic_project.celery import app

    for each in MODES:
        worker = f"push-{each}@{socket.gethostname()}"
        change = app.control.add_consumer if each == mode else app.control.cancel_consumer
        if not change("celery", destination=[worker], reply=True, timeout=10):
            sys.exit(f"worker {worker} did not answer a remote control command")


def _scan(
    size: str, user: Any, token: str, web: Any, clients: bool
) -> tuple[float, list[float], float, dict[str, float]]:
    """One scan (the 505 real symbols, or 5,000 demo ones): seconds from enqueue to completed,
    the latencies its clients saw, the web process's CPU seconds until they all finished, and
    the seconds from enqueue to the first stage and of each stage (from the scan's row)."""
    from engine.config import ScanConfig
    from market.sources import DataSource
    from scanner import services

    folder = market_dir()
    real = DataSource("parquet", str(folder / "prices.parquet"), str(folder / "constituents.csv"))
    source = real if size == "505" else DataSource("demo")
    with mock.patch.object(services.transaction, "on_commit", lambda _: None):
        scan = services.scan_create(owner=user, config=ScanConfig(), source=source)
    audience = Clients(f"ws://127.0.0.1:{web.port}/scan/ws/{scan.id}?token={token}") if clients else None
    if audience:
        audience.start()
    time.sleep(QUIET_SECONDS)
    cpu0 = _cpu_seconds(web.process.pid)
    t0 = time.time()
    services.scan_start(scan)
    row = completed_scan(scan.id)
    elapsed = row.finished_at.timestamp() - t0
    stage_seconds = {"until_first_stage": row.universe_loading_started_at.timestamp() - t0}
    stage_seconds |= {stage: float(timing["seconds"]) for stage, timing in row.stage_timings().items()}
    if audience is None:
        return elapsed, [], 0.0, stage_seconds
    audience.join()
    if audience.terminal != CLIENTS:
        sys.exit(f"{CLIENTS - audience.terminal} clients missed the terminal message")
    return elapsed, audience.latencies_ms, _cpu_seconds(web.process.pid) - cpu0, stage_seconds


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
