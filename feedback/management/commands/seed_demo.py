"""`manage.py seed_demo`: the demo's users, project and prompts; prints the logins. Safe to re-run."""

from typing import Any

from django.core.management.base import BaseCommand

from feedback.services.demo import DEMO_ACCOUNTS, demo_credentials_path, demo_seed


class Command(BaseCommand):
    help = "Create (or bring up to date) the demo users, project and bundled prompts, and print the logins."

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed()
        self.stdout.write(f"Demo project {result.project.slug!r}: prompts {result.prompts.summary()}.")
        self.stdout.write(f"Demo logins (kept in {demo_credentials_path()}):")
        for account in DEMO_ACCOUNTS:
            password = result.credentials[account.username]
            self.stdout.write(f"  {account.username:<11} {password:<18} {account.role}")
