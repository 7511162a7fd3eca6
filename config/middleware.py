"""Project-wide HTTP middleware."""


class PrivateCacheMiddleware:
    """Mark every response for a signed-in user as private and unstorable.

    A shared proxy or CDN must never hand one member's page or JSON to another (T44).
    Static files are served by whitenoise before this middleware and keep their long cache.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "private, no-store"
        return response
