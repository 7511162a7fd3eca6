from django.core.management.base import BaseCommand

from chat.transport.sweep import sweep_stale_replies


class Command(BaseCommand):
    help = "Mark replies whose worker died (stale heartbeat) as interrupted, keeping their text."

    def add_arguments(self, parser):
        parser.add_argument("--stale-seconds", type=float, default=None)

    def handle(self, *args, stale_seconds=None, **options):
        count = sweep_stale_replies(stale_seconds=stale_seconds)
        self.stdout.write(f"{count} stale replies marked interrupted")
