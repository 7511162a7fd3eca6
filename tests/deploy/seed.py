"""Seed a deployment under test: alice and bob, a provider at the fake upstream, one model.

Run in its own process against the deployment's database, like an operator's
``manage.py shell``: ``python -m tests.deploy.seed --base-url http://127.0.0.1:N/v1``.
Prints one JSON object: the members' passwords and session cookies, and the model id.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from chat.models import ChatModel, Provider
    from tests.conftest import PASSWORD

    User = get_user_model()
    sessions = {}
    for name in ("alice", "bob"):
        user = User.objects.create_user(name, password=PASSWORD, email=f"{name}@example.test")
        client = Client()
        client.force_login(user)
        sessions[name] = client.cookies["sessionid"].value
    provider = Provider(name="Fake", base_url=args.base_url)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    model = ChatModel.objects.create(
        provider=provider,
        model_id="gpt-4o-mini",
        display_name="GPT-4o mini",
        context_window=128_000,
        max_output_tokens=4096,
        is_default=True,
    )
    print(json.dumps({"password": PASSWORD, "sessions": sessions, "model_id": model.pk}))


if __name__ == "__main__":
    main()
