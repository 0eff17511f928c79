"""API tokens: the service, the Bearer authentication, the command and the admin pages."""

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from feedback.models import ApiToken
from feedback.services.tokens import (
    LAST_USED_RESOLUTION,
    api_token_create,
    api_token_get_by_secret,
    api_token_revoke,
    api_token_touch,
)
from tests.factories import DataEngineerFactory

pytestmark = pytest.mark.django_db

PROJECTS = "/api/v1/projects"


def get_with(authorization: str | None):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(PROJECTS)


def token_rows() -> list[tuple]:
    return list(ApiToken.objects.order_by("pk").values_list("pk", "name", "revoked_at", "last_used_at"))


# --- the service -----------------------------------------------------------------------------------------


def test_only_the_hash_and_a_prefix_of_the_secret_are_stored(data_engineer):
    token, secret = api_token_create(user=data_engineer, name="nightly export", lifetime=timedelta(days=30))
    assert secret.startswith("rw_")
    assert len(secret) == 46
    token.refresh_from_db()
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:11]
    stored = [str(value) for value in ApiToken.objects.values_list(flat=False).get(pk=token.pk)]
    assert all(secret not in value for value in stored)
    assert token.expires_at - token.created_at == timedelta(days=30)
    assert api_token_get_by_secret(secret) == token


def test_two_tokens_never_share_a_secret(data_engineer):
    secrets = {api_token_create(user=data_engineer, name=f"token {n}")[1] for n in range(20)}
    assert len(secrets) == 20


def test_the_default_lifetime_is_ninety_days(data_engineer):
    token, _ = api_token_create(user=data_engineer, name="default")
    assert (token.expires_at - token.created_at).days == 90


@pytest.mark.parametrize(
    ("name", "lifetime", "active", "errors"),
    [
        ("", timedelta(days=1), True, {"name": ["Say what the token is for, e.g. 'nightly export job'."]}),
        ("x" * 101, timedelta(days=1), True, {"name": ["At most 100 characters."]}),
        ("ok", timedelta(days=366), True, {"lifetime": ["A token lives from a minute to 365 days."]}),
        ("ok", timedelta(seconds=59), True, {"lifetime": ["A token lives from a minute to 365 days."]}),
        ("ok", timedelta(days=1), False, {"user": ["Tokens are for active users only."]}),
    ],
)
def test_a_bad_token_request_creates_nothing(name, lifetime, active, errors):
    user = DataEngineerFactory(is_active=active)
    with pytest.raises(ValidationError) as raised:
        api_token_create(user=user, name=name, lifetime=lifetime)
    assert raised.value.message_dict == errors
    assert ApiToken.objects.count() == 0


def test_revoking_is_once(data_engineer):
    token, _ = api_token_create(user=data_engineer, name="to revoke")
    assert api_token_revoke(token=token) is True
    first = ApiToken.objects.get(pk=token.pk).revoked_at
    assert first is not None
    assert api_token_revoke(token=token) is False
    assert ApiToken.objects.get(pk=token.pk).revoked_at == first


def test_last_used_moves_at_most_once_a_minute(data_engineer, django_assert_num_queries):
    token, _ = api_token_create(user=data_engineer, name="busy script")
    now = timezone.now()
    assert api_token_touch(token=token, now=now) is True
    with django_assert_num_queries(0):
        assert api_token_touch(token=token, now=now + timedelta(seconds=59)) is False
    assert ApiToken.objects.get(pk=token.pk).last_used_at == now
    # Another request holding a stale copy of the row cannot move it back or twice.
    stale_copy = ApiToken.objects.get(pk=token.pk)
    stale_copy.last_used_at = None
    assert api_token_touch(token=stale_copy, now=now + timedelta(seconds=30)) is False
    later = now + LAST_USED_RESOLUTION + timedelta(seconds=1)
    assert api_token_touch(token=token, now=later) is True
    assert ApiToken.objects.get(pk=token.pk).last_used_at == later


# --- authentication --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["Bearer", "bearer", "Token"])
def test_a_valid_token_authenticates(data_engineer, keyword):
    token, secret = api_token_create(user=data_engineer, name="script")
    response = get_with(f"{keyword} {secret}")
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_requests_within_a_minute_do_not_write_the_token(data_engineer, django_assert_num_queries):
    _, secret = api_token_create(user=data_engineer, name="script")
    assert get_with(f"Bearer {secret}").status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    # token lookup, group check, the page: no UPDATE of the token
    with django_assert_num_queries(3) as queries:
        assert client.get(PROJECTS).status_code == 200
    assert not any(query["sql"].startswith("UPDATE") for query in queries.captured_queries)


def expired(user):
    token, secret = api_token_create(user=user, name="old")
    now = timezone.now()
    ApiToken.objects.filter(pk=token.pk).update(
        created_at=now - timedelta(days=2), expires_at=now - timedelta(seconds=1)
    )
    return secret


def revoked(user):
    token, secret = api_token_create(user=user, name="revoked")
    api_token_revoke(token=token)
    return secret


def inactive(user):
    _, secret = api_token_create(user=user, name="of a leaver")
    user.is_active = False
    user.save()
    return secret


@pytest.mark.parametrize(
    ("make_header", "detail"),
    [
        (lambda user: "Bearer rw_" + "A" * 43, "Invalid token."),
        (lambda user: "Bearer not-a-token", "Invalid token."),
        (lambda user: "Bearer", "Malformed Authorization header"),
        (lambda user: "Bearer rw_a rw_b", "Malformed Authorization header"),
        (lambda user: f"Bearer {expired(user)}", "This token expired at "),
        (lambda user: f"Bearer {revoked(user)}", "This token was revoked; ask for a new one."),
        (lambda user: f"Bearer {inactive(user)}", "The token's user is inactive."),
    ],
    ids=["unknown", "malformed-secret", "no-secret", "two-secrets", "expired", "revoked", "inactive-user"],
)
def test_bad_tokens_get_401_with_a_reason(data_engineer, make_header, detail):
    header = make_header(data_engineer)
    before = token_rows()
    response = get_with(header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["detail"].startswith(detail)
    assert set(response.json()) == {"detail"}
    assert token_rows() == before  # last_used_at untouched


def test_no_credentials_get_401_not_403():
    response = get_with(None)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_other_authorization_schemes_are_left_to_the_session(data_engineer):
    assert get_with("Basic dXNlcjpwYXNz").status_code == 401


def test_the_session_works_for_reads_and_enforces_csrf_on_writes(data_engineer):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(data_engineer)
    assert client.get(PROJECTS).status_code == 200
    response = client.post("/api/v1/exports", {"format": "preference"}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF Failed")


# --- the command -----------------------------------------------------------------------------------------


def test_the_command_prints_the_secret_alone_once(data_engineer):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_token", data_engineer.username, "--name", "nightly", "--days", "7", stdout=out, stderr=err
    )
    secret = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.key_hash) == (
        data_engineer,
        "nightly",
        hashlib.sha256(secret.encode()).hexdigest(),
    )
    assert (token.expires_at - token.created_at).days == 7
    assert secret not in err.getvalue()
    assert f"Created token 'nightly' ({token.prefix}…) for {data_engineer.username}" in err.getvalue()
    assert get_with(f"Bearer {secret}").status_code == 200


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nobody", "--name", "x"], "No user 'nobody'."),
        (
            ["engineer-user", "--name", "x", "--days", "400"],
            "No token created: days: A token lives from a minute",
        ),
        (
            ["engineer-user", "--name", "x", "--days", "0"],
            "No token created: days: A token lives from a minute",
        ),
        (["engineer-user", "--name", " "], "No token created: name: Say what the token is for"),
    ],
)
def test_the_command_refuses_bad_requests(data_engineer, arguments, message):
    with pytest.raises(CommandError) as raised:
        call_command("create_api_token", *arguments, stdout=StringIO(), stderr=StringIO())
    assert str(raised.value).startswith(message)
    assert ApiToken.objects.count() == 0


# --- the admin -------------------------------------------------------------------------------------------


def test_the_admin_creates_a_token_and_shows_its_secret_once(admin_client, data_engineer):
    response = admin_client.post(
        reverse("admin:feedback_apitoken_add"),
        {"user": data_engineer.pk, "name": "from the admin", "days": "30"},
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    secret = response.context["secret"]
    assert secret in response.content.decode()
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (token.user, token.name, (token.expires_at - token.created_at).days) == (
        data_engineer,
        "from the admin",
        30,
    )
    assert "no-store" in response["Cache-Control"]
    assert get_with(f"Bearer {secret}").status_code == 200

    for page in (
        reverse("admin:feedback_apitoken_changelist"),
        reverse("admin:feedback_apitoken_change", args=[token.pk]),
    ):
        body = admin_client.get(page).content.decode()
        assert token.prefix in body
        assert secret not in body
        assert token.key_hash not in body


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "x", "days": "366"}, "days", "Ensure this value is less than or equal to 365."),
        ({"name": "", "days": "30"}, "name", "This field is required."),
    ],
)
def test_the_admin_add_form_refuses_bad_input(admin_client, data_engineer, form, field, message):
    response = admin_client.post(reverse("admin:feedback_apitoken_add"), {"user": data_engineer.pk, **form})
    assert response.status_code == 200
    assert response.context["form"].errors == {field: [message]}
    assert ApiToken.objects.count() == 0


def test_the_admin_revokes_selected_tokens(admin_client, data_engineer):
    keep, keep_secret = api_token_create(user=data_engineer, name="keep")
    drop, drop_secret = api_token_create(user=data_engineer, name="drop")
    response = admin_client.post(
        reverse("admin:feedback_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [drop.pk]},
        follow=True,
    )
    assert [str(message) for message in response.context["messages"]] == ["Revoked 1 token(s)."]
    assert ApiToken.objects.get(pk=drop.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=keep.pk).revoked_at is None
    assert get_with(f"Bearer {drop_secret}").status_code == 401
    assert get_with(f"Bearer {keep_secret}").status_code == 200


def test_tokens_cannot_be_edited_in_the_admin(admin_client, data_engineer):
    token, _ = api_token_create(user=data_engineer, name="fixed")
    response = admin_client.post(
        reverse("admin:feedback_apitoken_change", args=[token.pk]),
        {"name": "renamed", "expires_at": "2099-01-01"},
    )
    assert response.status_code == 403
    token.refresh_from_db()
    assert token.name == "fixed"
