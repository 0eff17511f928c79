"""`manage.py create_api_token USERNAME --name WHAT [--days N]`: a token for a script.

The secret goes to stdout alone, once, so that `TOKEN=$(manage.py create_api_token …)` captures it; what
was created goes to stderr. Only the secret's SHA-256 is stored: it cannot be shown again.
"""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.services.tokens import DEFAULT_LIFETIME, MAX_LIFETIME, api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print its secret (shown this once only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token acts as.")
        parser.add_argument("--name", required=True, help="What the token is for, e.g. 'nightly export'.")
        parser.add_argument(
            "--days",
            type=int,
            default=DEFAULT_LIFETIME.days,
            help=f"Days until it expires (default {DEFAULT_LIFETIME.days}, at most {MAX_LIFETIME.days}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None
        try:
            token, secret = api_token_create(
                user=user, name=options["name"], lifetime=timedelta(days=options["days"])
            )
        except ValidationError as error:
            reasons = "; ".join(
                f"{'days' if field == 'lifetime' else field}: {' '.join(messages)}"
                for field, messages in error.message_dict.items()
            )
            raise CommandError(f"No token created: {reasons}") from None
        self.stderr.write(
            f"Created token {token.name!r} ({token.prefix}…) for {user.get_username()}, expires "
            f"{token.expires_at:%Y-%m-%d %H:%M} UTC. The secret below is shown this once:"
        )
        self.stdout.write(secret)
