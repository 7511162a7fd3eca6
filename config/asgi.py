"""ASGI entry point: HTTP through Django, websockets through Channels.

Django's ASGI application is built first so that the app registry is ready before the
routing (which imports consumers and models) is imported. It is Django's handler with
Django's security, CSRF and clickjacking middleware loaded as their inline subclasses
(config/middleware.py says why).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does

from config.middleware import ASGIHandler  # noqa: E402

django_asgi_app = ASGIHandler()  # Django's, with its middleware's hooks in the event loop

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat import runtime  # noqa: E402
from chat.transport.routing import websocket_urlpatterns  # noqa: E402
from config.websocket import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Foreign origins (scheme, host and port, as Django's CSRF check compares them) and
        # anonymous users are refused before accept (T20, T21).
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Under daphne, a SIGTERM saves every streaming reply as interrupted and closes the sockets
# with 1012 before the process exits (docs/security.md T43).
runtime.install_shutdown_hook()
