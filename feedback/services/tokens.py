"""API tokens: create one (the secret is returned once, only its SHA-256 is kept), revoke one, look one up.

A secret is `rw_` and 43 URL-safe characters (256 random bits). Its first characters are stored as a
prefix, so people can tell their tokens apart in the admin; nothing else of it is. Every token expires:
90 days by default, a year at most, so a forgotten script's token does not live forever.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from feedback.models import ApiToken, sha256_hex

SECRET_PREFIX = "rw_"  # noqa: S105 - the marker every secret starts with, not a secret
SECRET_BYTES = 32
# "rw_" + 43 characters of base64url: what `secrets.token_urlsafe(32)` gives.
SECRET_LENGTH = len(SECRET_PREFIX) + 43
PREFIX_LENGTH = len(SECRET_PREFIX) + 8
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=365)
MIN_LIFETIME = timedelta(minutes=1)
# `last_used_at` is a hint for people, not an audit log: it moves at most once per this interval, so a
# busy script does not write the token row on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length or 100


def token_hash(secret: str) -> str:
    return sha256_hex(secret)


def api_token_create(*, user: Any, name: str, lifetime: timedelta = DEFAULT_LIFETIME) -> tuple[ApiToken, str]:
    """Create a token for `user` and return it with its secret, which is not stored and cannot be shown
    again. Raises ValidationError with field messages (name, lifetime, user); nothing is written then."""
    errors: dict[str, str] = {}
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        errors["name"] = "Say what the token is for, e.g. 'nightly export job'."
    elif len(name) > NAME_MAX_LENGTH:
        errors["name"] = f"At most {NAME_MAX_LENGTH} characters."
    if not isinstance(lifetime, timedelta) or not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        errors["lifetime"] = f"A token lives from a minute to {MAX_LIFETIME.days} days."
    if user is None or user.pk is None or not user.is_active:
        errors["user"] = "Tokens are for active users only."
    if errors:
        raise ValidationError(errors)

    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secret[:PREFIX_LENGTH],
            key_hash=token_hash(secret),
            expires_at=timezone.now() + lifetime,
        )
        # `created_at` is stamped by the save itself; count the lifetime from it exactly.
        token.expires_at = token.created_at + lifetime
        token.save(update_fields=["expires_at"])
    return token, secret


def api_token_revoke(*, token: ApiToken) -> bool:
    """Revoke a token for good; returns False if it was already revoked (the first revocation's time stays)."""
    with transaction.atomic():
        now = timezone.now()
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    if revoked:
        token.revoked_at = now
    return bool(revoked)


def api_token_get_by_secret(secret: str) -> ApiToken | None:
    """The token a secret belongs to, with its user, or None. Says nothing about expiry or revocation:
    the caller decides what those mean. Malformed secrets are refused without a query."""
    if (
        not secret.startswith(SECRET_PREFIX)
        or len(secret) != SECRET_LENGTH
        or not secret.isascii()
        or not secret[len(SECRET_PREFIX) :].replace("-", "").replace("_", "").isalnum()
    ):
        return None
    return ApiToken.objects.select_related("user").filter(key_hash=token_hash(secret)).first()


def api_token_touch(*, token: ApiToken, now: datetime | None = None) -> bool:
    """Record that the token was used, at most once per LAST_USED_RESOLUTION.

    Only a token whose `last_used_at` (as loaded) is older than that issues a write, and the write is one
    conditional UPDATE, so concurrent requests of one token move it once. Returns whether it moved.
    """
    now = now or timezone.now()
    stale_before = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale_before:
        return False
    with transaction.atomic():
        moved = (
            ApiToken.objects.filter(pk=token.pk)
            .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before))
            .update(last_used_at=now)
        )
    if moved:
        token.last_used_at = now
    return bool(moved)
