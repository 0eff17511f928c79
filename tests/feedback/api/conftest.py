"""Clients of the API: one per role, authenticated with a real token (or nothing)."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from feedback.services.tokens import api_token_create


def token_client(user, *, keyword: str = "Bearer") -> APIClient:
    _, secret = api_token_create(user=user, name=f"tests of {user.username}", lifetime=timedelta(days=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    return client


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # Throttles count in the process's local-memory cache, which outlives each test's transaction.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _export_root(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"


@pytest.fixture
def engineer_api(data_engineer) -> APIClient:
    return token_client(data_engineer)


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    return token_client(admin_user)


@pytest.fixture
def annotator_api(annotator) -> APIClient:
    return token_client(annotator)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()
