"""Keeps the "last seen" of a member's session for their sessions page (accounts/sessions.py).

Works in Django's sync and async modes: one sync-only middleware would make Django run every
view below it through the one thread-sensitive thread (config/middleware.py says why that
matters).
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings

from accounts import sessions


class SessionSeenMiddleware:
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
        response = self.get_response(request)
        self._seen(request)
        return response

    async def _acall(self, request):
        response = await self.get_response(request)
        if settings.SESSION_COOKIE_NAME in request.COOKIES:
            # The session is lazy: reading it may need the database thread.
            await sync_to_async(self._seen)(request)
        return response

    @staticmethod
    def _seen(request) -> None:
        session = getattr(request, "session", None)
        # Only a session that signs someone in has a record; at most one write a minute.
        if session is not None and session.session_key and session.get("_auth_user_id"):
            sessions.session_seen(session_key=session.session_key)
