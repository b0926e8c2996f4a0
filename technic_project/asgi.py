"""ASGI entry point ``technic_project.asgi:application``: HTTP and WebSocket in one server."""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "technic_project.settings")
# Static files (the admin's, the API docs' Swagger UI) are served by this same process, from the
# installed apps: a self-hosted deployment needs no separate file server.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from infra.bodies import BodyLimitMiddleware  # noqa: E402
from infra.logs import redact_access_log  # noqa: E402
from live.auth import TokenAuthMiddleware  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402
from technic_project.websocket import unrouted  # noqa: E402

# daphne's access log shows each request's URL, whose ?token= or ?ticket= must not be written.
redact_access_log()

application = ProtocolTypeRouter(
    {
        # Bodies are bounded in size and time before Django reads them (infra.bodies).
        "http": BodyLimitMiddleware(django_asgi_app),
        # The token middleware sits inside the session's, so ``?ticket=``/``?token=`` override the session user.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter([*websocket_urlpatterns, unrouted])))
        ),
    }
)
