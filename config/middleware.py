"""Project-wide HTTP middleware.

Both classes work in Django's sync and async modes. Under daphne Django runs the chain in
async mode, and one sync-only middleware makes Django run everything below it, async views
included, through ``sync_to_async`` on the one thread-sensitive thread: every request's view
phase then waits for the previous request's (measured with the member API's streaming
views: 200 requests at once took 15 s to their first token, docs/performance.md).
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
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
