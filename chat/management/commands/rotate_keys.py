"""Re-encrypt every stored provider API key under the newest PARLEY_ENCRYPTION_KEYS key.

Rotation (docs/deployment.md): prepend a new key to PARLEY_ENCRYPTION_KEYS and restart, so
new keys are written under it while old ones still decrypt; run this; then remove the old key.
``--check`` only reports, and exits 1 while any key still needs the old one.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chat import crypto
from chat.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt every provider API key under the newest key in PARLEY_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="Change nothing; exit 1 if a key is not under the newest key."
        )

    def handle(self, *args, check=False, **options):
        rotated, current, unreadable = [], 0, []
        for provider in Provider.objects.exclude(api_key_encrypted="").order_by("pk"):
            old = provider.api_key_encrypted
            if crypto.is_current(old):
                current += 1
                continue
            try:
                plaintext = crypto.decrypt(old)
            except crypto.KeyDecryptionError:
                unreadable.append(provider.name)
                continue
            if check:
                rotated.append(provider.name)
                continue
            with transaction.atomic():
                # Compare and swap: a key an admin saved meanwhile is already under the
                # newest key and must not be overwritten with the old one.
                Provider.objects.filter(pk=provider.pk, api_key_encrypted=old).update(
                    api_key_encrypted=crypto.encrypt(plaintext)
                )
            rotated.append(provider.name)

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
