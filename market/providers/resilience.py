"""Being polite to, and resilient against, a remote market-data API.

Four pieces, each with its state behind a small store (:mod:`market.providers.state_stores`)
so every worker process (and machine) can share it through Redis, or keep it in-process:

* :class:`RetryPolicy`: exponential backoff with full jitter, honouring ``Retry-After``;
* :class:`CircuitBreaker`: opens after ``threshold`` consecutive failures (5xx answers,
  timeouts, refused or dropped connections), fails fast while open, lets exactly one probe
  through after the cool-down (``SET NX`` on the probe key) and closes when the probe succeeds;
* :class:`RateLimiter`: one request every ``1 / rate`` seconds across all processes (a shared
  "next free slot" time, read from the Redis server's clock); a ``Retry-After`` holds everyone;
* :class:`RequestLedger`: counts requests per scope (a scan) and in total, and refuses a
  request beyond the scope's budget.

Nothing here imports Django, Celery or the redis package: the Redis store takes a client
object. Redis errors propagate (the stage tasks retry them as transient).
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from market.providers.base import ProviderUnavailable

if TYPE_CHECKING:
    from market.providers.state_stores import StateStore


class CircuitOpenError(ProviderUnavailable):
    """The breaker is open: the request was not sent."""


class RequestBudgetExceeded(ProviderUnavailable):
    """The scope (a scan) used its whole request budget: the request was not sent."""


class RequestFailed(ProviderUnavailable):
    """One request gave up: retries exhausted, or an answer that no retry can fix."""


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; the n-th retry (n = 0, 1, …) waits a
    uniformly random time in ``[0, min(backoff_max, backoff_base * 2**n)]`` ("full jitter", so
    workers that failed together do not retry together), or exactly what ``Retry-After`` asks
    when the server says. A ``Retry-After`` above ``retry_after_max`` is not waited for."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2.0**retry)
        return (rng or random).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- the pieces callers use ---------------------------------------------------------------


@dataclass(frozen=True)
class Permit:
    """Leave to send one request; report its outcome exactly once."""

    breaker: CircuitBreaker
    probe: bool

    def succeeded(self) -> None:
        self.breaker.store.breaker_success(self.probe)

    def failed(self) -> None:
        self.breaker.store.breaker_failure(self.breaker.threshold, self.probe)


@dataclass(frozen=True)
class CircuitBreaker:
    """A breaker over ``store``. ``probe_ttl`` bounds how long one probe blocks the others (its
    process may die mid-request); set it to the request's longest possible duration."""

    store: StateStore
    name: str
    threshold: int = 5
    cooldown: float = 30.0
    probe_ttl: float = 15.0

    def permit(self) -> Permit:
        """A permit, or :class:`CircuitOpenError` at once (no request is sent)."""
        verdict, left = self.store.breaker_acquire(self.cooldown, self.probe_ttl)
        if verdict == "open":
            state = self.store.breaker_read()
            when = f"next probe in {left:.0f} s" if left > 0 else "a probe is in flight"
            raise CircuitOpenError(
                f"{self.name} is unavailable: circuit breaker open after "
                f"{state['consecutive_failures']} consecutive failures ({when})"
            )
        return Permit(self, verdict == "probe")

    def state(self) -> dict[str, Any]:
        return {**self.store.breaker_read(), "threshold": self.threshold, "cooldown_seconds": self.cooldown}


@dataclass(frozen=True)
class RateLimiter:
    """At most ``rate`` requests a second over every process sharing ``store``; 0 = no limit."""

    store: StateStore
    rate: float

    def wait(self, sleep: Any = time.sleep) -> float:
        """Sleep until this caller's slot; returns the seconds slept."""
        if self.rate <= 0:
            return 0.0
        delay = self.store.limiter_reserve(1.0 / self.rate)
        if delay > 0:
            sleep(delay)
        return delay

    def hold(self, seconds: float) -> None:
        """The server asked everyone to wait (``Retry-After``): no slot before then."""
        if seconds > 0:
            self.store.limiter_hold(seconds)


@dataclass(frozen=True)
class Scope:
    name: str
    budget: int | None


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("provider_request_scope", default=None)


@contextlib.contextmanager
def request_scope(name: str, budget: int | None = None) -> Iterator[None]:
    """Count the requests made inside (in this context and threads started with a copy of
    it) under ``name``, refusing any beyond ``budget``."""
    token = _SCOPE.set(Scope(name, budget))
    try:
        yield
    finally:
        _SCOPE.reset(token)


@dataclass(frozen=True)
class RequestLedger:
    """Request counts, per scope and in total; enforces the current scope's budget."""

    store: StateStore

    def spend(self) -> int:
        """Count one request about to be sent; raises :class:`RequestBudgetExceeded` instead
        when the current scope has no budget left."""
        scope = _SCOPE.get()
        if scope is None:
            return self.store.count(None, "requests")
        return self.store.count(scope.name, "requests", scope.budget)

    def note(self, field: str) -> None:
        """Count an event (``throttled``, ``failed``, ``retried``) in the current scope."""
        scope = _SCOPE.get()
        self.store.count(scope.name if scope else None, field)

    def counts(self, scope: str | None = None) -> dict[str, int]:
        return self.store.counts(scope)


@dataclass(frozen=True)
class Resilience:
    """What a remote provider needs to be polite and resilient, sharing one store."""

    policy: RetryPolicy
    breaker: CircuitBreaker
    limiter: RateLimiter
    ledger: RequestLedger

    @classmethod
    def build(
        cls,
        store: StateStore,
        name: str,
        policy: RetryPolicy,
        rate: float,
        threshold: int,
        cooldown: float,
        probe_ttl: float,
    ) -> Resilience:
        return cls(
            policy,
            CircuitBreaker(store, name, threshold, cooldown, probe_ttl),
            RateLimiter(store, rate),
            RequestLedger(store),
        )
