"""Bearer tokens for scripts. The browser's session is DRF's SessionAuthentication (CSRF enforced)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from feedback.models import ApiToken
from feedback.services.tokens import api_token_get_by_secret, api_token_touch

KEYWORDS = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <secret>` (or `Token <secret>`). Sets `request.auth` to the ApiToken.

    Refuses unknown, expired and revoked tokens and tokens of inactive users with 401 and a message
    saying which. A request without such a header is left to the next authentication class.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(
                "Malformed Authorization header: send 'Authorization: Bearer <token>', the token without spaces."
            )
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        token = api_token_get_by_secret(secret)
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        now = timezone.now()
        if token.revoked_at is not None:
            raise AuthenticationFailed("This token was revoked; ask for a new one.")
        if token.expires_at <= now:
            raise AuthenticationFailed(
                f"This token expired at {token.expires_at.isoformat()}; ask for a new one."
            )
        if not token.user.is_active:
            raise AuthenticationFailed("The token's user is inactive.")
        api_token_touch(token=token, now=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Present, so DRF answers unauthenticated requests with 401 and this challenge, not 403.
        return 'Bearer realm="api"'


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from the admin or `manage.py create_api_token`: `Bearer rw_…`.",
        }
