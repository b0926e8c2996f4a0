"""Where the resilience state lives: in Redis, shared by every process, or in this process.

:class:`StateStore` is what :mod:`market.providers.resilience` needs: a circuit breaker's
state, the rate limiter's next free slot and request counters. :class:`RedisStateStore` keeps it
in Redis under ``<prefix>:breaker:<name>`` (a hash: ``state``, ``failures``, ``opened_at``,
``opened``), ``<prefix>:breaker:<name>:probe`` (the one probe, ``SET NX PX``),
``<prefix>:ratelimit:<name>`` and ``<prefix>:requests:<name>[:<scope>]``; every transition is one
Lua script run on the server's clock. :class:`LocalStateStore` keeps the same in memory.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from market.providers.resilience import RequestBudgetExceeded


class StateStore(Protocol):
    """Shared state of one remote service's breaker, rate limit and request counts."""

    def breaker_acquire(self, cooldown: float, probe_ttl: float) -> tuple[str, float]:
        """``("allow", 0)``, ``("probe", 0)`` (this caller is the one probe) or ``("open", retry_in)``."""
        ...

    def breaker_success(self, probe: bool) -> None: ...

    def breaker_failure(self, threshold: int, probe: bool) -> None: ...

    def breaker_read(self) -> dict[str, Any]: ...

    def limiter_reserve(self, interval: float) -> float:
        """Reserve the next slot; returns the seconds to wait for it."""
        ...

    def limiter_hold(self, seconds: float) -> None:
        """No slot starts before ``seconds`` from now."""
        ...

    def count(self, scope: str | None, field: str, budget: int | None = None) -> int:
        """Add one to ``field`` of ``scope`` (and of the totals); returns the scope's new value.
        With ``budget``, a count beyond it is undone and :class:`RequestBudgetExceeded` raised."""
        ...

    def counts(self, scope: str | None) -> dict[str, int]: ...


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return {'allow', '0'} end
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
local left = opened + tonumber(ARGV[1]) - now
if left > 0 then return {'open', tostring(left)} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return {'probe', '0'}
end
return {'open', '0'}
"""

_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  redis.call('DEL', KEYS[2])
elseif not state or state == 'closed' then
  redis.call('HSET', KEYS[1], 'failures', 0)
end
return 1
"""

_FAILURE = """
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
local state = redis.call('HGET', KEYS[1], 'state')
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if ARGV[2] == '1' or ((not state or state == 'closed') and failures >= tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  redis.call('HINCRBY', KEYS[1], 'opened', 1)
  redis.call('DEL', KEYS[2])
end
return 1
"""

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + tonumber(ARGV[2]))
local after = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000) + 1000)
return string.format('%.6f', slot - now)
"""


class RedisStateStore:
    """The state in Redis under ``<prefix>:breaker:<name>`` (hash), ``…:probe``,
    ``<prefix>:ratelimit:<name>`` and ``<prefix>:requests:<name>[:<scope>]`` (hashes; a scope's
    counts expire after ``scope_ttl`` seconds). Atomic through Lua scripts on the server's clock,
    so processes on machines with skewed clocks still agree."""

    def __init__(self, client: Any, prefix: str, name: str, scope_ttl: int = 7 * 86400) -> None:
        self.client = client
        self.breaker_key = f"{prefix}:breaker:{name}"
        self.probe_key = f"{self.breaker_key}:probe"
        self.limiter_key = f"{prefix}:ratelimit:{name}"
        self.requests_key = f"{prefix}:requests:{name}"
        self.scope_ttl = scope_ttl
        self._acquire = client.register_script(_ACQUIRE)
        self._success = client.register_script(_SUCCESS)
        self._failure = client.register_script(_FAILURE)
        self._reserve = client.register_script(_RESERVE)

    def breaker_acquire(self, cooldown: float, probe_ttl: float) -> tuple[str, float]:
        verdict, left = self._acquire(
            keys=[self.breaker_key, self.probe_key], args=[cooldown, max(1, int(probe_ttl * 1000))]
        )
        return _text(verdict), float(_text(left))

    def breaker_success(self, probe: bool) -> None:
        self._success(keys=[self.breaker_key, self.probe_key], args=["1" if probe else "0"])

    def breaker_failure(self, threshold: int, probe: bool) -> None:
        self._failure(keys=[self.breaker_key, self.probe_key], args=[threshold, "1" if probe else "0"])

    def breaker_read(self) -> dict[str, Any]:
        raw = {_text(k): _text(v) for k, v in self.client.hgetall(self.breaker_key).items()}
        seconds, micros = self.client.time()
        return _breaker_view(raw, seconds + micros / 1e6)

    def limiter_reserve(self, interval: float) -> float:
        return float(_text(self._reserve(keys=[self.limiter_key], args=[interval, 0])))

    def limiter_hold(self, seconds: float) -> None:
        self._reserve(keys=[self.limiter_key], args=[0, seconds])

    def count(self, scope: str | None, field: str, budget: int | None = None) -> int:
        pipe = self.client.pipeline()
        pipe.hincrby(self.requests_key, field, 1)
        if scope is not None:
            pipe.hincrby(f"{self.requests_key}:{scope}", field, 1)
            pipe.expire(f"{self.requests_key}:{scope}", self.scope_ttl)
        answers = pipe.execute()
        value = int(answers[1] if scope is not None else answers[0])
        if budget is not None and value > budget:
            pipe = self.client.pipeline()
            pipe.hincrby(self.requests_key, field, -1)
            if scope is not None:
                pipe.hincrby(f"{self.requests_key}:{scope}", field, -1)
            pipe.execute()
            raise _spent(budget, scope)
        return value

    def counts(self, scope: str | None) -> dict[str, int]:
        key = self.requests_key if scope is None else f"{self.requests_key}:{scope}"
        return {_text(k): int(v) for k, v in self.client.hgetall(key).items()}


class LocalStateStore:
    """The same state in this process only (no Redis): for a single process, such as a
    command-line scan or a benchmark of the provider alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breaker: dict[str, str] = {}
        self._probe_until = 0.0
        self._next_slot = 0.0
        self._counts: dict[str | None, dict[str, int]] = {}

    def breaker_acquire(self, cooldown: float, probe_ttl: float) -> tuple[str, float]:
        with self._lock:
            now = time.time()
            if self._breaker.get("state", "closed") == "closed":
                return "allow", 0.0
            left = float(self._breaker.get("opened_at", "0")) + cooldown - now
            if left > 0:
                return "open", left
            if now >= self._probe_until:
                self._probe_until = now + probe_ttl
                self._breaker["state"] = "half_open"
                return "probe", 0.0
            return "open", 0.0

    def breaker_success(self, probe: bool) -> None:
        with self._lock:
            if probe:
                self._breaker.update(state="closed", failures="0")
                self._probe_until = 0.0
            elif self._breaker.get("state", "closed") == "closed":
                self._breaker["failures"] = "0"

    def breaker_failure(self, threshold: int, probe: bool) -> None:
        with self._lock:
            failures = int(self._breaker.get("failures", "0")) + 1
            self._breaker["failures"] = str(failures)
            if probe or (self._breaker.get("state", "closed") == "closed" and failures >= threshold):
                self._breaker.update(state="open", opened_at=repr(time.time()))
                self._breaker["opened"] = str(int(self._breaker.get("opened", "0")) + 1)
                self._probe_until = 0.0

    def breaker_read(self) -> dict[str, Any]:
        with self._lock:
            return _breaker_view(dict(self._breaker), time.time())

    def limiter_reserve(self, interval: float) -> float:
        with self._lock:
            now = time.time()
            slot = max(self._next_slot, now)
            self._next_slot = slot + interval
            return slot - now

    def limiter_hold(self, seconds: float) -> None:
        with self._lock:
            self._next_slot = max(self._next_slot, time.time() + seconds)

    def count(self, scope: str | None, field: str, budget: int | None = None) -> int:
        with self._lock:
            scoped = self._counts.setdefault(scope, {})
            if budget is not None and scoped.get(field, 0) + 1 > budget:
                raise _spent(budget, scope)
            scoped[field] = scoped.get(field, 0) + 1
            if scope is not None:
                totals = self._counts.setdefault(None, {})
                totals[field] = totals.get(field, 0) + 1
            return scoped[field]

    def counts(self, scope: str | None) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.get(scope, {}))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _breaker_view(raw: dict[str, str], now: float) -> dict[str, Any]:
    opened_at = float(raw["opened_at"]) if raw.get("opened_at") else None
    return {
        "state": raw.get("state", "closed"),
        "consecutive_failures": int(raw.get("failures", "0")),
        "opened_at": opened_at,
        "open_for_seconds": round(now - opened_at, 3) if opened_at and raw.get("state") != "closed" else None,
        "times_opened": int(raw.get("opened", "0")),
    }


def _spent(budget: int, scope: str | None) -> RequestBudgetExceeded:
    return RequestBudgetExceeded(f"the budget of {budget} requests of {scope} is spent; nothing more is sent")
