"""Typed reads of environment variables that fail loudly on malformed values."""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

Choice = TypeVar("Choice", bound=str)


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from err
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: Choice, choices: tuple[Choice, ...]) -> Choice:
    """The one of ``choices`` that the variable names (trimmed, any case), typed as they are."""
    value = os.environ.get(name, default).strip().lower()
    for choice in choices:
        if value == choice:
            return choice
    raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}")


def env_float_map(name: str, default: dict[str, float]) -> dict[str, float]:
    """``name=a=0.1,b=0.9`` as ``{"a": 0.1, "b": 0.9}``."""
    raw = os.environ.get(name)
    if raw is None:
        return dict(default)
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        try:
            number = float(value) if sep else None
        except ValueError:
            number = None
        if number is None:
            raise ImproperlyConfigured(f"{name}={raw!r}: write it as name=number,name=number")
        out[key.strip()] = number
    return out


def env_networks(name: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """``name=10.0.0.1,192.168.0.0/16,::1`` as networks (an address is a network of one)."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError as err:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network (CIDR)") from err
    return tuple(networks)
