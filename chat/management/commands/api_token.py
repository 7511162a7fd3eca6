"""Make or revoke a member's API token from the command line (for scripting a deployment).

    manage.py api_token create USERNAME --name NAME [--expires-days N] [--model MODEL_ID ...] [--save-conversations]
    manage.py api_token revoke USERNAME --name NAME      (every active token of that name)
    manage.py api_token revoke --token pk-parley-...     (the token with that secret)

``create`` prints the token and nothing else on standard output (so ``$(...)`` captures it);
it is not stored anywhere and cannot be shown again.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat.errors import BadRequest
from chat.models import ApiToken, ChatModel, token_hash
from chat.services.api_tokens import api_token_create, api_token_revoke


class Command(BaseCommand):
    help = "Create (prints it) or revoke a member's API token for the /v1/ API."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Make a token and print it.")
        create.add_argument("username")
        create.add_argument("--name", required=True)
        create.add_argument("--expires-days", type=int, default=None)
        create.add_argument("--model", action="append", default=[], help="Limit the token to this model id.")
        create.add_argument("--save-conversations", action="store_true")
        revoke = actions.add_parser("revoke", help="Revoke a member's tokens by name, or one token by its secret.")
        revoke.add_argument("username", nargs="?")
        revoke.add_argument("--name")
        revoke.add_argument("--token", help="The token itself (pk-parley-...).")

    def handle(self, *args, action, **options):
        if action == "create":
            return self._create(**options)
        return self._revoke(**options)

    def _user(self, username):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No member is called {username!r}.") from None

    def _create(self, *, username, name, expires_days, model, save_conversations, **_options):
        user = self._user(username)
        expires_at = None
        if expires_days is not None:
            if expires_days <= 0:
                raise CommandError("--expires-days must be at least 1.")
            expires_at = timezone.now() + dt.timedelta(days=expires_days)
        model_ids = []
        for model_id in model:
            found = ChatModel.objects.filter(model_id=model_id).values_list("pk", flat=True).first()
            if found is None:
                raise CommandError(f"No model {model_id!r} in the catalog.")
            model_ids.append(found)
        try:
            created = api_token_create(
                user=user,
                name=name,
                expires_at=expires_at,
                model_ids=model_ids,
                save_conversations=save_conversations,
            )
        except BadRequest as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(created.secret)

    def _revoke(self, *, username, name, token, **_options):
        if token:
            tokens = ApiToken.objects.filter(token_hash=token_hash(token.strip()))
        elif username and name:
            tokens = ApiToken.objects.filter(user=self._user(username), name=name)
        else:
            raise CommandError("Give USERNAME --name NAME, or --token TOKEN.")
        found = list(tokens.filter(revoked=False))
        if not found:
            raise CommandError("No active token matches.")
        for item in found:
            api_token_revoke(token=item)
        self.stderr.write(f"Revoked {len(found)} token(s).")
