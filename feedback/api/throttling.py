"""Rate limits: token requests count per token in Django's cache (see CACHES in the settings)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from feedback.models import ApiToken


class ApiTokenRateThrottle(SimpleRateThrottle):
    """`RANKWISE_API_TOKEN_RATE` requests per token; session and anonymous requests are not counted here.

    The rate is read per request rather than at import (DRF's default), so settings overrides apply.
    """

    scope = "api_token"

    def get_rate(self) -> str:
        return str(settings.RANKWISE_API_TOKEN_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
