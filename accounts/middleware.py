"""Keeps the "last seen" of a member's session for their sessions page (accounts/sessions.py)."""

from accounts import sessions


class SessionSeenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        session = getattr(request, "session", None)
        # Only a session that signs someone in has a record; at most one write a minute.
        if session is not None and session.session_key and session.get("_auth_user_id"):
            sessions.session_seen(session_key=session.session_key)
        return response
