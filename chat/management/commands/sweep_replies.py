from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from chat.core.calls import calls_sweep_orphans
from chat.transport.sweep import sweep_stale_replies


class Command(BaseCommand):
    help = (
        "Mark replies whose worker died (stale heartbeat) as interrupted, keeping their text, and "
        "settle other calls' reservations left behind by a dead process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--stale-seconds", type=float, default=None)

    def handle(self, *args, stale_seconds=None, **options):
        count = sweep_stale_replies(stale_seconds=stale_seconds)
        self.stdout.write(f"{count} stale replies marked interrupted")
        calls = calls_sweep_orphans(older_than=timedelta(seconds=settings.PARLEY_STALE_CALL_SECONDS))
        self.stdout.write(f"{calls} abandoned calls settled")
