"""Run Parley's periodic housekeeping in the foreground (chat/jobs/housekeeping.py).

``manage.py serve`` runs this as a child process bound to daphne's lifetime. A deployment that runs
daphne directly (the Docker image's workers) runs this once, as its own process: the sweep
then lives apart from the workers whose dead replies it marks interrupted.
"""

import signal
import threading

from django.core.management.base import BaseCommand

from chat.jobs import housekeeping


class Command(BaseCommand):
    help = "Sweep replies whose worker died, refresh model catalogs and remove orphaned media files, until stopped."

    def handle(self, *args, **options):
        stop = threading.Event()
        # docker stop sends SIGTERM: finish the current round and leave cleanly.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write("housekeeping: sweeping stale replies and refreshing model catalogs")
        self.stdout.flush()
        housekeeping.run_forever(stop)
