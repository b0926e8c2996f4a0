"""technic settings, driven entirely by the environment (see README "Configuration").

Malformed values raise ImproperlyConfigured at start-up instead of falling back silently.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from infra.env import env_bool, env_choice, env_float_map, env_int, env_list, env_networks, env_str
from infra.schedules import new_york_crontab

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "market",
    "scanner",
    "progress",
    "cache_admin",
    "alpha",
    "web",
]

MIDDLEWARE = [
    "infra.middleware.JsonErrorMiddleware",  # first: it sees every other one's answers
    "django.middleware.security.SecurityMiddleware",
    "infra.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "infra.middleware.RedisUnavailableMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

ROOT_URLCONF = "technic_project.urls"
ASGI_APPLICATION = "technic_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DJANGO_DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker processes write concurrently: WAL, a busy timeout, and write locks taken
    # at BEGIN so two writers queue up instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# One Redis feeds broker, results, channels and progress; the price cache may live apart
# because its eviction policy must never evict broker or chord state.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHE_REDIS_URL = env_str("CACHE_REDIS_URL", REDIS_URL)

CELERY_BROKER_URL = REDIS_URL
# kombu's Redis transport, riding out a Redis restart in workers (infra/broker.py).
CELERY_BROKER_TRANSPORT = "infra.broker:Transport"
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ALLOW_ERROR_CB_ON_CHORD_HEADER = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connections before and after every task unless this
# is set (then only every this many tasks); technic_project.celery keeps them as a web process
# does instead: reused up to DJANGO_DB_CONN_MAX_AGE, checked before reuse, dropped when broken.
CELERY_DB_REUSE_MAX = 1000
CELERY_RESULT_EXPIRES = 24 * 3600
# Unacknowledged messages (those of a worker that died) return to the queue after this long,
# found by a sweep every TECHNIC_REDELIVERY_SWEEP_SECONDS. Every task time limit must be shorter,
# or a slow task would run twice, and the watchdog's stall limit longer than the timeout plus
# two sweeps, or it would fail a scan before its lost batches come back (both checked when a
# worker starts).
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 1200, minimum=2)
TECHNIC_REDELIVERY_SWEEP_SECONDS = max(1, min(60, CELERY_VISIBILITY_TIMEOUT // 20))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": TECHNIC_REDELIVERY_SWEEP_SECONDS,
    "unacked_restore_throttle": 1,  # every sweep looks (kombu's default: every tenth)
    # The sweep's lock, left held by a worker killed mid-sweep, expires by the next sweep.
    "unacked_mutex_expire": TECHNIC_REDELIVERY_SWEEP_SECONDS,
    # Priorities 0 (first) to 9: a new scan's first batches overtake an older scan's later ones.
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
    # A route that dropped is noticed (kombu pings an idle connection before use anyway).
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Storing a result tries three times; a worker's client itself waits out an outage first
    # (infra.redis_client.ride_out_outages), so this must not multiply that wait.
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 1, "interval_max": 1},
}
CELERY_REDIS_SOCKET_KEEPALIVE = True
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 900, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 960, minimum=1)
# A worker rides out Redis (broker, results, progress) being unreachable this long, a restart or
# a failover, retrying inside the task; then the task fails and so does its scan.
TECHNIC_REDIS_OUTAGE_SECONDS = env_int("TECHNIC_REDIS_OUTAGE_SECONDS", 60, minimum=1)
# The warmer (a beat task) keeps the default universe and this many most-scanned symbols cached.
TECHNIC_CACHE_WARM_INTERVAL = env_int("TECHNIC_CACHE_WARM_INTERVAL", 600, minimum=10)
TECHNIC_CACHE_WARM_TOP = env_int("TECHNIC_CACHE_WARM_TOP", 500, minimum=0)
# Finished scans older than this many days are deleted, with their results and skips, by a
# beat task run every TECHNIC_SCAN_RETENTION_INTERVAL seconds (scanner/retention.py); 0 keeps them.
TECHNIC_SCAN_RETENTION_DAYS = env_int("TECHNIC_SCAN_RETENTION_DAYS", 90, minimum=0)
TECHNIC_SCAN_RETENTION_INTERVAL = env_int("TECHNIC_SCAN_RETENTION_INTERVAL", 3600, minimum=60)
CELERY_BEAT_SCHEDULE = {
    "scan-watchdog": {
        "task": "scanner.tasks.watchdog",
        "schedule": env_int("TECHNIC_WATCHDOG_INTERVAL", 60, minimum=1),
    },
    "cache-warmer": {
        "task": "cache_admin.tasks.warm_cache",
        "schedule": TECHNIC_CACHE_WARM_INTERVAL,
        "options": {"expires": TECHNIC_CACHE_WARM_INTERVAL},  # a run no worker took in time is dropped
    },
    "scan-retention": {
        "task": "scanner.tasks.purge_finished_scans",
        "schedule": TECHNIC_SCAN_RETENTION_INTERVAL,
        "options": {"expires": TECHNIC_SCAN_RETENTION_INTERVAL},
    },
}

# Progress pushes go out over Redis pub/sub: one PUBLISH per update, whatever the number of
# listeners, and nothing piles up for a client that went away.
CHANNEL_LAYERS: dict[str, Any] = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("TECHNIC_KEY_PREFIX", "technic") + ":channels"},
    }
}

# One of market.providers.PROVIDER_NAMES (checked at start-up by market.apps, with POLYGON_API_KEY).
TECHNIC_DATA_PROVIDER = env_str("TECHNIC_DATA_PROVIDER", "demo").strip().lower()
TECHNIC_DATA_PATH = env_str("TECHNIC_DATA_PATH", "") or None
TECHNIC_UNIVERSE_PATH = env_str("TECHNIC_UNIVERSE_PATH", "") or None
TECHNIC_DEMO_SYMBOLS = env_int("TECHNIC_DEMO_SYMBOLS", 500, minimum=11)
# Symbols per scan_batch task (1 = one task per symbol); see docs/benchmarks.md.
TECHNIC_BATCH_SIZE = env_int("TECHNIC_BATCH_SIZE", 256, minimum=1)
# The rs_* fields' benchmark symbol (e.g. SPY); empty, or absent from the source: the
# equal-weighted index of the scan's universe (docs/screens.md).
TECHNIC_BENCHMARK = env_str("TECHNIC_BENCHMARK", "").strip().upper()
# A batch redelivered more often than this (it keeps killing its worker) marks its symbols error.
TECHNIC_BATCH_MAX_ATTEMPTS = env_int("TECHNIC_BATCH_MAX_ATTEMPTS", 3, minimum=1)
# The watchdog fails a running scan with no progress for this long: longer than a lost batch
# takes to come back (CELERY_VISIBILITY_TIMEOUT plus two sweeps; checked when a worker starts).
TECHNIC_SCAN_STALL_SECONDS = env_int("TECHNIC_SCAN_STALL_SECONDS", 1500, minimum=1)
# Before that, once no task of the scan can still be running, it resumes the scan: sends again
# the work not yet recorded, whose messages Redis may have lost (scanner/recovery.py).
TECHNIC_SCAN_RESUME_SECONDS = CELERY_TASK_TIME_LIMIT + TECHNIC_REDELIVERY_SWEEP_SECONDS
TECHNIC_KEY_PREFIX = env_str("TECHNIC_KEY_PREFIX", "technic")
# Share of each stage in overall progress: name=weight pairs summing to 1 (empty: the default
# weights; checked at start-up by progress.apps, which owns the stages).
TECHNIC_STAGE_WEIGHTS = env_float_map("TECHNIC_STAGE_WEIGHTS", {})
# Push progress to WebSocket and SSE clients (off: they still get the snapshot on connect).
TECHNIC_PROGRESS_PUSH = env_bool("TECHNIC_PROGRESS_PUSH", True)
# Price cache TTLs in seconds (see market/ttl.py): bars of the session in progress, bars
# ending on a finished trading day, a finished scan's results.
TECHNIC_CACHE_TTL_MARKET_HOURS = env_int("TECHNIC_CACHE_TTL_MARKET_HOURS", 300, minimum=1)
TECHNIC_CACHE_TTL_FINISHED_DAY = env_int("TECHNIC_CACHE_TTL_FINISHED_DAY", 7 * 86400, minimum=60)
TECHNIC_CACHE_TTL_RESULTS = env_int("TECHNIC_CACHE_TTL_RESULTS", 3600, minimum=1)


def _env_float(name: str, default: float, minimum: float) -> float:
    raw = env_str(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError as err:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from err
    if not value >= minimum:  # also rejects nan
        raise ImproperlyConfigured(f"{name}={raw} must be at least {minimum:g}")
    return value


# The market data store of remote providers (docs/marketdata.md): the calendar is read again at
# most this often (seconds) per source; beat tops the store up at this New York time on trading days.
TECHNIC_MARKETDATA_CALENDAR_INTERVAL = env_int("TECHNIC_MARKETDATA_CALENDAR_INTERVAL", 60, minimum=0)
TECHNIC_MARKETDATA_UPDATE_AT = env_str("TECHNIC_MARKETDATA_UPDATE_AT", "20:30").strip()
try:
    _update_at = datetime.strptime(TECHNIC_MARKETDATA_UPDATE_AT, "%H:%M")
except ValueError as err:
    raise ImproperlyConfigured(
        f"TECHNIC_MARKETDATA_UPDATE_AT={TECHNIC_MARKETDATA_UPDATE_AT!r} must be a New York time HH:MM, e.g. 20:30"
    ) from err
CELERY_BEAT_SCHEDULE["marketdata-update"] = {
    "task": "cache_admin.tasks.update_market_data",
    "schedule": new_york_crontab(hour=_update_at.hour, minute=_update_at.minute, day_of_week="mon-fri"),
    "options": {"expires": 3 * 3600},  # a run no worker took that evening is dropped, not run the next day
}

# The polygon provider (docs/polygon.md): key, endpoint, timeouts (s), retries with backoff,
# a rate limit shared by every worker (requests/s, 0 = none), the circuit breaker and each
# scan's request budget (this many requests per symbol, plus 20).
POLYGON_API_KEY = env_str("POLYGON_API_KEY", "").strip()
POLYGON_BASE_URL = env_str("POLYGON_BASE_URL", "https://api.polygon.io").strip()
if not POLYGON_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"POLYGON_BASE_URL={POLYGON_BASE_URL!r} must be an http:// or https:// URL")
POLYGON_CONNECT_TIMEOUT = _env_float("POLYGON_CONNECT_TIMEOUT", 3.0, minimum=0.01)
POLYGON_READ_TIMEOUT = _env_float("POLYGON_READ_TIMEOUT", 10.0, minimum=0.01)
POLYGON_MAX_RETRIES = env_int("POLYGON_MAX_RETRIES", 3, minimum=0)
POLYGON_BACKOFF_BASE = _env_float("POLYGON_BACKOFF_BASE", 0.5, minimum=0.0)
POLYGON_BACKOFF_MAX = _env_float("POLYGON_BACKOFF_MAX", 30.0, minimum=0.0)
POLYGON_RETRY_AFTER_MAX = _env_float("POLYGON_RETRY_AFTER_MAX", 60.0, minimum=0.0)
POLYGON_RATE_LIMIT = _env_float("POLYGON_RATE_LIMIT", 25.0, minimum=0.0)
POLYGON_CONCURRENCY = env_int("POLYGON_CONCURRENCY", 4, minimum=1)
POLYGON_BREAKER_THRESHOLD = env_int("POLYGON_BREAKER_THRESHOLD", 5, minimum=1)
POLYGON_BREAKER_COOLDOWN = _env_float("POLYGON_BREAKER_COOLDOWN", 30.0, minimum=0.0)
POLYGON_SCAN_BUDGET_PER_SYMBOL = _env_float("POLYGON_SCAN_BUDGET_PER_SYMBOL", 3.0, minimum=1.0)
POLYGON_CALENDAR_TICKER = env_str("POLYGON_CALENDAR_TICKER", "SPY").strip().upper()
POLYGON_FETCH_STRATEGY: Literal["auto", "per_ticker", "grouped"] = env_choice(
    "POLYGON_FETCH_STRATEGY", "auto", ("auto", "per_ticker", "grouped")
)
try:
    POLYGON_HISTORY_START = (
        date.fromisoformat(env_str("POLYGON_HISTORY_START", "")) if env_str("POLYGON_HISTORY_START", "") else None
    )
except ValueError as err:
    raise ImproperlyConfigured(f"POLYGON_HISTORY_START: {err}; write it as YYYY-MM-DD") from err

# Rate limits are counted in Redis by infra.throttles (in the process while Redis is
# down); nothing relies on Django's cache, which stays in memory so a Redis outage cannot break it.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Client addresses come from X-Forwarded-For only when the peer is one of these proxies
# (addresses or CIDR networks); otherwise the peer address is the client's.
TECHNIC_TRUSTED_PROXIES = env_networks("TECHNIC_TRUSTED_PROXIES")
# API tokens stop authenticating this many seconds after they were made (0: never; they can
# always be revoked with POST /api/auth/token/revoke/).
TECHNIC_TOKEN_TTL = env_int("TECHNIC_TOKEN_TTL", 30 * 86400, minimum=0)
# Failed logins (login page, admin, POST /api/auth/token/) from one address or for one user name
# before further attempts are refused for TECHNIC_LOGIN_COOLOFF seconds (infra/logins.py).
TECHNIC_LOGIN_FAILURE_LIMIT = env_int("TECHNIC_LOGIN_FAILURE_LIMIT", 10, minimum=1)
TECHNIC_LOGIN_COOLOFF = env_int("TECHNIC_LOGIN_COOLOFF", 900, minimum=1)
AUTHENTICATION_BACKENDS = [
    "infra.logins.LoginAttemptsBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = TECHNIC_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=TECHNIC_LOGIN_COOLOFF)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "infra.throttles.client_address"
AXES_LOCKOUT_CALLABLE = "infra.logins.lockout_response"
AXES_VERBOSE = False  # no banner on every start-up: it would break the CLI's one-line errors

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "infra.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["infra.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "infra.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "infra.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "infra.throttles.AnonThrottle",
        "infra.throttles.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("TECHNIC_THROTTLE_ANON", "60/min"),
        "user": env_str("TECHNIC_THROTTLE_USER", "600/min"),
        "scan_start": env_str("TECHNIC_THROTTLE_SCAN_START", "30/min"),
        "screen_preview": env_str("TECHNIC_THROTTLE_SCREEN_PREVIEW", "30/min"),
    },
}
# A user may have this many scans pending or running at once; more answer 429.
TECHNIC_MAX_ACTIVE_SCANS = env_int("TECHNIC_MAX_ACTIVE_SCANS", 3, minimum=1)
# POST /scan/start with async_mode false (and the legacy GET /scan) waits this long for the
# workers before answering 202 with the scan's URLs instead of its results.
TECHNIC_SYNC_SCAN_TIMEOUT = env_int("TECHNIC_SYNC_SCAN_TIMEOUT", 120, minimum=1)
# Request bodies above this many bytes answer 413 (infra.middleware applies Django's
# own limit, which also covers bodies sent without a Content-Length).
TECHNIC_MAX_BODY_BYTES = env_int("TECHNIC_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TECHNIC_MAX_BODY_BYTES
# A request's body must arrive within this many seconds of its headers, or it answers 408; the
# web process refuses an over-long body as its bytes arrive (infra/bodies.py).
TECHNIC_BODY_TIMEOUT = env_int("TECHNIC_BODY_TIMEOUT", 30, minimum=1)
# JSON bodies nested deeper than this answer 400 JSON_TOO_DEEP before they are decoded.
TECHNIC_MAX_JSON_DEPTH = env_int("TECHNIC_MAX_JSON_DEPTH", 32, minimum=2)
# Live progress connections (WebSocket and SSE together) a user may hold at once; more are refused.
TECHNIC_MAX_LIVE_CONNECTIONS = env_int("TECHNIC_MAX_LIVE_CONNECTIONS", 20, minimum=1)
# GET /scan/results answers at most this many result rows (the default page; ?limit= asks fewer).
TECHNIC_RESULTS_PAGE_SIZE = env_int("TECHNIC_RESULTS_PAGE_SIZE", 5000, minimum=1)
CSRF_FAILURE_VIEW = "technic_project.api.csrf_failure"

# /metrics and the details of /health/detailed are for staff sessions and for
# "Authorization: Bearer <TECHNIC_METRICS_TOKEN>" (Prometheus); unset, only staff see them.
TECHNIC_METRICS_TOKEN = env_str("TECHNIC_METRICS_TOKEN", "").strip()
if TECHNIC_METRICS_TOKEN and len(TECHNIC_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("TECHNIC_METRICS_TOKEN must be at least 32 characters (e.g. openssl rand -hex 32)")

# Served over HTTPS behind a proxy (docs/operations.md "HTTPS"): the header the proxy sets on
# HTTPS requests, the origins session POSTs come from, and DJANGO_HTTPS=true for secure cookies,
# HSTS and the redirect to HTTPS (probes and the Prometheus scrape may stay on plain HTTP).
_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER", [])
if _ssl_header:
    if len(_ssl_header) != 2 or not _ssl_header[0].startswith("HTTP_"):
        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER={','.join(_ssl_header)!r}: write it as HTTP_X_FORWARDED_PROTO,https "
            "(the header as Django names it, then the value the proxy sends on HTTPS requests)"
        )
    SECURE_PROXY_SSL_HEADER = (_ssl_header[0], _ssl_header[1])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    _parts = urlsplit(_origin)
    if _parts.scheme not in ("http", "https") or not _parts.netloc or _parts.path or _parts.query:
        raise ImproperlyConfigured(
            f"DJANGO_CSRF_TRUSTED_ORIGINS: {_origin!r} is not an origin; write scheme://host[:port], "
            "e.g. https://technic.example.com"
        )
DJANGO_HTTPS = env_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = DJANGO_HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 86400 if DJANGO_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", DJANGO_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]

SPECTACULAR_SETTINGS = {
    "TITLE": "technic API",
    "DESCRIPTION": (
        "A distributed stock technical scanner: start scans, follow their progress, read and compare "
        "results.\n\nAuthenticate with `Authorization: Token <token>` (`POST /api/auth/token/` answers one) "
        "or the web page's session (unsafe methods then need the `X-CSRFToken` header). Live progress is also "
        "pushed over the WebSocket `/scan/ws/{scan_id}` (`?ticket=<ticket>`, which `POST /api/auth/ticket/` "
        "answers for 60 s; `?token=<token>` still works), with the ProgressSnapshot schema "
        "plus `type`.\n\nEvery error answers JSON: "
        '`{"error": {"code": "…", "message": "…", "suggestions": […], "details": {…}}}`.'
    ),
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # A scan's status is one enum wherever it appears (otherwise drf-spectacular names it by a hash
    # and warns, which fails manage.py check --deploy --fail-level WARNING).
    "ENUM_NAME_OVERRIDES": {"ScanStatusEnum": "scanner.models.ScanStatus"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "live.openapi.add_event_stream_paths",
    ],
}

# Every line names its scan (scan_id) while a scan's task runs; TECHNIC_LOG_FORMAT=json writes
# one JSON object per line (infra/logs.py). Celery workers use this configuration too.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "scan_id": {"()": "infra.logs.ScanIdFilter"},
        "redact": {"()": "infra.logs.RedactFilter"},  # no token or ticket in any line
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s [scan=%(scan_id)s] %(message)s"},
        "json": {"()": "infra.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env_choice("TECHNIC_LOG_FORMAT", "plain", ("plain", "json")),
            "filters": ["scan_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO").upper()},
}
