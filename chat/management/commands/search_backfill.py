"""Embed the conversations that existed before search by meaning (or before an embedding model
was set up): ``manage.py search_backfill [--member NAME ...] [--retry-failed] [--now]``."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.jobs.search import conversation_index_enqueue
from chat.services.search import conversation_index, search_backfill


class Command(BaseCommand):
    help = (
        "Queue every complete message of members' conversations for search by meaning (those not "
        "queued yet) and enqueue the embedding jobs for the worker (manage.py db_worker); the "
        "embedding calls are billed to each member. --now embeds here instead of enqueueing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--member", action="append", default=[], help="username (repeat for several)")
        parser.add_argument("--retry-failed", action="store_true", help="take up messages marked failed again")
        parser.add_argument("--now", action="store_true", help="embed in this process, not through the worker")

    def handle(self, *args, member, retry_failed, now, **options):
        owner_ids = None
        if member:
            users = get_user_model().objects.filter(username__in=member)
            owner_ids = list(users.values_list("pk", flat=True))
            if len(owner_ids) != len(set(member)):
                raise CommandError(
                    "unknown member: " + ", ".join(sorted(set(member) - set(users.values_list("username", flat=True))))
                )
        conversations = search_backfill(owner_ids=owner_ids, retry_failed=retry_failed)
        outcomes: dict[str, int] = {}
        for conversation_id in conversations:
            if now:
                outcome = conversation_index(conversation_id)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            else:
                conversation_index_enqueue(conversation_id)
        if now:
            summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "nothing to do"
            self.stdout.write(f"{len(conversations)} conversations embedded here: {summary}")
        else:
            self.stdout.write(f"{len(conversations)} conversations enqueued for search by meaning")
