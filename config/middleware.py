"""Project-wide HTTP middleware, and Django's own called without a thread where it can be.

Every class here works in Django's sync and async modes. Under daphne Django runs the chain in
async mode, and one sync-only middleware makes Django run everything below it, async views
included, through ``sync_to_async`` on the one thread-sensitive thread: every request's view
phase then waits for the previous request's (measured with the member API's streaming
views: 200 requests at once took 15 s to their first token, docs/performance.md).
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from csp import middleware as csp
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers import asgi
from django.middleware import clickjacking, common, csrf, locale, security
from whitenoise.middleware import WhiteNoiseMiddleware as _WhiteNoiseMiddleware


class PrivateCacheMiddleware:
    """Mark every response for a signed-in user as private and unstorable.

    A shared proxy or CDN must never hand one member's page or JSON to another (T44).
    Static files are served by whitenoise before this middleware and keep their long cache.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self._private(request, self.get_response(request))

    async def _acall(self, request):
        response = await self.get_response(request)
        if response.has_header("Cache-Control") or settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return response  # nothing to add: no session, no signed-in user
        # request.user is lazy: reading it loads the session, which needs the database thread.
        return await sync_to_async(self._private)(request, response)

    @staticmethod
    def _private(request, response):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "private, no-store"
        return response


class WhiteNoiseMiddleware(_WhiteNoiseMiddleware):
    """whitenoise's middleware (static files, compressed and cached forever), usable in async
    mode: a static file is found by a dictionary lookup, so nothing here needs a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)


# --- Django's middleware, inline ---------------------------------------------------------------
# In async mode Django calls each hook of a MiddlewareMixin (process_request, process_view,
# process_response) through sync_to_async: a hop to the request's thread and back for each,
# 17 for every request through this chain, each waiting for the interpreter lock while other
# requests run Python (docs/performance.md, "The member API"). The hooks below do no I/O
# (headers, a lazy session, user or message store, the language), so in async mode they are
# called in the event loop; a session or messages that must be written still take the
# thread. Django's security, CSRF and clickjacking middleware keep Django's names in
# settings.MIDDLEWARE, which its deployment checks look for, and are loaded as the subclasses
# at the end of this module by the handler daphne serves (``ASGIHandler``). In sync mode
# (WSGI, the test client) nothing changes.
class _Inline:
    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self._writes(request):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response

    def _writes(self, request) -> bool:
        """Whether process_response will write to storage (and so needs the thread)."""
        return False


class LocaleMiddleware(_Inline, locale.LocaleMiddleware):
    pass


class CommonMiddleware(_Inline, common.CommonMiddleware):
    pass


class AuthenticationMiddleware(_Inline, auth.AuthenticationMiddleware):
    pass  # request.user stays lazy: the session and the user are read when a view asks


class CSPMiddleware(_Inline, csp.CSPMiddleware):
    pass


class SessionMiddleware(_Inline, sessions.SessionMiddleware):
    def _writes(self, request) -> bool:
        # The store is lazy: only a changed session (or one saved on every request) is written.
        return request.session.modified or settings.SESSION_SAVE_EVERY_REQUEST


class MessageMiddleware(_Inline, messages.MessageMiddleware):
    def _writes(self, request) -> bool:
        # Messages read or added are stored (in the session, or a cookie after reading it).
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class SecurityMiddleware(_Inline, security.SecurityMiddleware):
    pass  # the HTTPS redirect and the security headers


class XFrameOptionsMiddleware(_Inline, clickjacking.XFrameOptionsMiddleware):
    pass  # one header


class CsrfViewMiddleware(_Inline, csrf.CsrfViewMiddleware):
    """Django's CSRF middleware with its request and response hooks in the event loop (a
    cookie read, a cookie set), and its view hook too where that reads no body: a view exempt
    from CSRF (the member API, whose keys are not cookies) or a safe method. A form or an
    upload is checked on the thread, where ``request.POST`` may parse a large body into
    files. The token is kept in its cookie (Django's default): with ``CSRF_USE_SESSIONS`` the
    hooks would read and write the session, so that setting is refused here."""

    def __init__(self, get_response):
        if settings.CSRF_USE_SESSIONS:
            raise ImproperlyConfigured("config.middleware.CsrfViewMiddleware keeps the token in its cookie.")
        super().__init__(get_response)
        if self.async_mode:
            # Django's handler takes the hook from the instance: a coroutine is awaited as it is.
            self.process_view = self._aprocess_view  # type: ignore[method-assign]

    async def _aprocess_view(self, request, callback, callback_args, callback_kwargs):
        view = csrf.CsrfViewMiddleware.process_view
        if getattr(callback, "csrf_exempt", False) or request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return view(self, request, callback, callback_args, callback_kwargs)
        return await sync_to_async(view, thread_sensitive=True)(self, request, callback, callback_args, callback_kwargs)


# Django's deployment checks (``manage.py check --deploy``) look for these three by their own
# names in settings.MIDDLEWARE, so the setting keeps those; the ASGI handler that daphne serves
# loads the inline subclasses in their place. Django's test clients and WSGI keep Django's own.
INLINE = {
    "django.middleware.security.SecurityMiddleware": "config.middleware.SecurityMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware": "config.middleware.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "config.middleware.XFrameOptionsMiddleware",
}


class ASGIHandler(asgi.ASGIHandler):
    """Django's ASGI handler, with the middleware of settings.MIDDLEWARE named in ``INLINE``
    loaded as their inline subclasses. Built once, when config.asgi is imported."""

    def load_middleware(self, is_async=False):
        listed = settings.MIDDLEWARE
        settings.MIDDLEWARE = [INLINE.get(path, path) for path in listed]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = listed
