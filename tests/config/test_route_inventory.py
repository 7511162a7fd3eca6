"""Route inventory (docs/security.md T04): every HTTP and websocket route is classified, and only
public routes answer anonymous users; members never reach an admin route.

Adding a route? Add one line to ROUTES (HTTP) or WEBSOCKET_ROUTES below:
    PUBLIC  anyone, signed in or not (sign-in page, health probe)
    MEMBER  any signed-in account; anonymous users get a redirect to sign-in, 401, 403 or 404
    ADMIN   staff only; anonymous users and members get a redirect to the admin login or 403
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import reverse

from tests.chat.wsclient import handshake
from tests.config.routes import http_routes, unique, websocket_routes

PUBLIC, MEMBER, ADMIN = "public", "member", "admin"

# Keyed by "namespace:name", or by the full pattern for an unnamed route.
ROUTES = {
    "healthz": PUBLIC,
    "set_language": PUBLIC,
    "login": PUBLIC,
    "logout": PUBLIC,  # signing out when not signed in changes nothing
    "signup": PUBLIC,
    "join": PUBLIC,
    # Single sign-on: starting one and the provider's answer are how anonymous people get in.
    "oidc_start": PUBLIC,
    "oidc_callback": PUBLIC,
    # The second factor and its required set-up serve someone half-way through signing in
    # (a pending sign-in in their session) or a member; anybody else goes to sign-in.
    "two_factor_verify": MEMBER,
    "two_factor_setup": MEMBER,
    "two_factor": MEMBER,
    "two_factor_off": MEMBER,
    "recovery_codes_new": MEMBER,
    "member_sessions": MEMBER,
    "member_session_end": MEMBER,
    "member_sessions_end_others": MEMBER,
    "admin_login": PUBLIC,  # the admin's sign-in page, with the sign-in policy and second factor
    "password_change": MEMBER,
    "password_change_done": MEMBER,
    "chat:home": MEMBER,
    "chat:new": MEMBER,
    "chat:conversation": MEMBER,
    "chat:usage": MEMBER,
    "chat:api_conversations": MEMBER,
    "chat:api_images": MEMBER,
    "chat:api_image_models": MEMBER,
    "chat:api_conversation": MEMBER,
    "chat:api_export_md": MEMBER,
    "chat:api_export_json": MEMBER,
    "chat:api_fork": MEMBER,
    "chat:api_training": MEMBER,
    "chat:api_models": MEMBER,
    "chat:api_defaults": MEMBER,
    "chat:api_budget": MEMBER,
    "chat:api_documents": MEMBER,
    "chat:api_document": MEMBER,
    "chat:api_share": MEMBER,
    "chat:api_shares": MEMBER,
    "chat:api_share_detail": MEMBER,
    "chat:api_library_text": MEMBER,
    "chat:api_presets": MEMBER,
    "chat:api_preset": MEMBER,
    "chat:api_prompts": MEMBER,
    "chat:api_prompt": MEMBER,
    "chat:api_prompt_fill": MEMBER,
    "chat:api_folders": MEMBER,
    "chat:api_folder": MEMBER,
    # Members only unless PARLEY_PUBLIC_SHARE_LINKS (off by default, as this test runs).
    "chat:shared": MEMBER,
    "chat:api_collections": MEMBER,
    "chat:collections": MEMBER,
    "chat:collection": MEMBER,
    "chat:api_vision_images": MEMBER,
    "chat:api_collection": MEMBER,
    "chat:api_collection_documents": MEMBER,
    "chat:api_conversation_collection": MEMBER,
    "chat:api_conversation_collections": MEMBER,
    "chat:passage": MEMBER,
    "chat:api_voice_transcriptions": MEMBER,
    "chat:api_voice_settings": MEMBER,
    "chat:api_message_speech": MEMBER,
    "chat:api_keys": MEMBER,
    "chat:api_key_revoke": MEMBER,
    # The member API: a member's token in the Authorization header, never a session (T46).
    "v1:models": MEMBER,
    "v1:model": MEMBER,
    "v1:chat_completions": MEMBER,
    "v1:completions": MEMBER,
    "v1:edits": MEMBER,
    "v1:embeddings": MEMBER,
    "v1:moderations": MEMBER,
    "v1:root": MEMBER,
    "v1:unknown": MEMBER,
    "chat:media": MEMBER,
    "admin:login": PUBLIC,
    "admin:logout": PUBLIC,  # admin_view sends anyone who is not staff back to the admin index
}

# Every view Django's AdminSite serves is wrapped in admin_view (staff only), so a whole
# namespace can be classified at once; each of its routes is still requested below, which
# catches a custom admin view someone forgot to wrap. Explicit ROUTES entries win.
NAMESPACES = {"admin": ADMIN}

# Keyed by the websocket route pattern in chat/transport/routing.py.
WEBSOCKET_ROUTES = {
    "ws/chat/": MEMBER,
}

# Hand-written request paths for routes whose generated sample cannot reach them.
SAMPLE_PATHS: dict[str, str] = {}

ANONYMOUS_REFUSALS = {401, 403, 404}
ORIGIN = "http://localhost"
HOST = "localhost"  # the Host a browser on ORIGIN sends; the origin check compares the two


def _classify(route):
    if route.key in ROUTES:
        return ROUTES[route.key]
    return NAMESPACES.get(route.namespace.split(":")[0])


HTTP = unique(http_routes(SAMPLE_PATHS))
PROTECTED = [route for route in HTTP if _classify(route) in (MEMBER, ADMIN)]
ADMIN_ONLY = [route for route in HTTP if _classify(route) == ADMIN]
PUBLIC_ROUTES = [route for route in HTTP if _classify(route) == PUBLIC]


def _login_urls():
    return (resolve_url(settings.LOGIN_URL), reverse("admin:login"))


def _refused_anonymous(response) -> bool:
    if response.status_code == 302:
        return response["Location"].startswith(_login_urls())
    return response.status_code in ANONYMOUS_REFUSALS


# --- the inventory itself -------------------------------------------------------------------


def test_every_http_route_is_classified():
    unclassified = sorted(route.key for route in HTTP if _classify(route) is None)
    assert not unclassified, (
        f"Unclassified routes: {unclassified}. Add each to ROUTES in tests/config/test_route_inventory.py "
        "as PUBLIC, MEMBER or ADMIN (docs/security.md T04)."
    )


def test_the_inventory_lists_no_route_that_is_gone():
    known = {route.key for route in HTTP}
    stale = sorted(set(ROUTES) - known)
    assert not stale, f"ROUTES lists routes that no longer exist: {stale}. Remove them."


def test_every_websocket_route_is_classified():
    routes = websocket_routes()
    assert routes, "chat.transport.routing has no websocket route"
    unclassified = sorted(route.key for route in routes if route.key not in WEBSOCKET_ROUTES)
    assert not unclassified, (
        f"Unclassified websocket routes: {unclassified}. Add each to WEBSOCKET_ROUTES in "
        "tests/config/test_route_inventory.py as PUBLIC, MEMBER or ADMIN."
    )
    stale = sorted(set(WEBSOCKET_ROUTES) - {route.key for route in routes})
    assert not stale, f"WEBSOCKET_ROUTES lists routes that no longer exist: {stale}. Remove them."


def test_the_admin_namespace_is_really_walked():
    # Guards the walker: if it stopped descending into includes, the checks below would pass
    # on nothing.
    keys = {route.key for route in ADMIN_ONLY}
    assert {"admin:index", "admin:accounts_user_changelist", "admin:accounts_invite_add"} <= keys


# --- anonymous users ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", PROTECTED, ids=lambda route: route.key)
def test_anonymous_users_are_refused_on_every_protected_route(route):
    client = Client()
    answers = {method: getattr(client, method)(route.path) for method in ("get", "post")}
    for method, response in answers.items():
        # 405 refuses too (a GET-only view checks the method first) and reveals nothing.
        assert response.status_code == 405 or _refused_anonymous(response), (
            f"Anonymous {method.upper()} {route.path} ({route.key}, classified {_classify(route)}) answered "
            f"{response.status_code} {response.get('Location', '')}; expected a redirect to sign-in, 401, 403 "
            "or 404."
        )
    assert any(_refused_anonymous(response) for response in answers.values()), (
        f"{route.key} answered only 405 to anonymous GET and POST: no sign-in check was observed."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("route", PUBLIC_ROUTES, ids=lambda route: route.key)
def test_public_routes_answer_anonymous_users_without_an_error(route):
    client = Client()
    for method in ("get", "post"):
        assert getattr(client, method)(route.path).status_code < 500


# --- members --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", ADMIN_ONLY, ids=lambda route: route.key)
def test_members_never_reach_an_admin_route(route, alice):
    client = Client()
    client.force_login(alice)
    for method in ("get", "post"):
        response = getattr(client, method)(route.path)
        if response.status_code == 302:
            assert response["Location"].startswith(reverse("admin:login")), (method, route.path, response["Location"])
        else:
            assert response.status_code == 403, (
                f"Member {method.upper()} {route.path} ({route.key}) answered {response.status_code}"
            )


# --- websockets -----------------------------------------------------------------------------


@database_sync_to_async
def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def _connects(path, cookie=None) -> bool:
    from config.asgi import application

    headers = [(b"host", HOST.encode()), (b"origin", ORIGIN.encode())]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return await handshake(WebsocketCommunicator(application, path, headers=headers))


@pytest.mark.django_db(transaction=True)
async def test_anonymous_users_cannot_open_a_protected_websocket():
    for route in websocket_routes():
        if WEBSOCKET_ROUTES.get(route.key) in (MEMBER, ADMIN):
            assert not await _connects(route.path), f"anonymous websocket accepted on {route.key}"


@pytest.mark.django_db(transaction=True)
async def test_members_can_open_member_websockets_but_not_admin_ones(alice):
    cookie = await _session_cookie(alice)
    for route in websocket_routes():
        level = WEBSOCKET_ROUTES.get(route.key)
        if level == ADMIN:
            assert not await _connects(route.path, cookie), f"member websocket accepted on admin route {route.key}"
        elif level == MEMBER:
            assert await _connects(route.path, cookie), f"member refused on {route.key}: is the sample path right?"
