"""Create the first admin if there is none (run by `make run`).

Credentials come from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD; otherwise a
random password is generated and printed once. There is no "first sign-up becomes admin".
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Create the first admin account if no admin exists."

    def handle(self, *args, **options):
        User = get_user_model()
        with transaction.atomic():
            if User.objects.filter(is_superuser=True).exists():
                return
            username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
            password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
            generated = not password
            if generated:
                password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(password)
            user.save()
        self.stdout.write(self.style.SUCCESS("Created the first admin account."))
        self.stdout.write(f"  username: {username}")
        if generated:
            self.stdout.write(f"  password: {password}   (shown once: write it down)")
        else:
            self.stdout.write("  password: from DJANGO_SUPERUSER_PASSWORD")
