"""Re-encrypt every stored provider API key (and single sign-on client secret) under the
newest PARLEY_ENCRYPTION_KEYS key.

Rotation (docs/deployment.md): prepend a new key to PARLEY_ENCRYPTION_KEYS and restart, so
new keys are written under it while old ones still decrypt; run this; then remove the old key.
``--check`` only reports, and exits 1 while any key still needs the old one.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import OIDCProvider
from chat import crypto
from chat.models import Provider

# Every encrypted column: (model, field, the attribute that names a row to the admin).
ENCRYPTED = [(Provider, "api_key_encrypted", "name"), (OIDCProvider, "client_secret_encrypted", "label")]


class Command(BaseCommand):
    help = "Re-encrypt every provider API key under the newest key in PARLEY_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="Change nothing; exit 1 if a key is not under the newest key."
        )

    def handle(self, *args, check=False, **options):
        rotated, current, unreadable = [], 0, []
        for model, field, label in ENCRYPTED:
            for row in model.objects.exclude(**{field: ""}).order_by("pk"):
                old = getattr(row, field)
                if crypto.is_current(old):
                    current += 1
                    continue
                try:
                    plaintext = crypto.decrypt(old)
                except crypto.KeyDecryptionError:
                    unreadable.append(getattr(row, label))
                    continue
                if check:
                    rotated.append(getattr(row, label))
                    continue
                with transaction.atomic():
                    # Compare and swap: a key an admin saved meanwhile is already under the
                    # newest key and must not be overwritten with the old one.
                    model.objects.filter(pk=row.pk, **{field: old}).update(**{field: crypto.encrypt(plaintext)})
                rotated.append(getattr(row, label))

        if check:
            self.stdout.write(f"{current} provider keys under the newest key, {len(rotated)} under an older one.")
        else:
            self.stdout.write(
                f"Re-encrypted {len(rotated)} provider keys under the newest key; {current} already were."
            )
        if unreadable:
            raise CommandError(
                "No key in PARLEY_ENCRYPTION_KEYS decrypts the stored key of: "
                + ", ".join(unreadable)
                + ". Put the key they were saved with back in the list, or enter them again in the admin."
            )
        if check and rotated:
            raise CommandError("Not yet rotated: " + ", ".join(rotated) + ". Run `manage.py rotate_keys`.")
