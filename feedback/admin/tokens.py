"""API tokens: created through the service, which shows the secret once; revoked, never edited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from feedback.admin.common import field_errors
from feedback.models import ApiToken
from feedback.services.tokens import DEFAULT_LIFETIME, MAX_LIFETIME, api_token_create, api_token_revoke


class ApiTokenCreateForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        help_text="The token acts as this user, with this user's role.",
    )
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly export job'.")
    days = forms.IntegerField(
        label="Lifetime (days)",
        min_value=1,
        max_value=MAX_LIFETIME.days,
        initial=DEFAULT_LIFETIME.days,
        help_text=f"Every token expires; at most {MAX_LIFETIME.days} days.",
    )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here through the service, which returns the secret once: the page after
    creation shows it and nothing stores it. Tokens are never edited, only revoked (or deleted); the
    stored hash is shown nowhere."""

    list_display = ("name", "user", "prefix", "state", "created_at", "expires_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    fields = ("name", "user", "prefix", "state", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields
    actions = ("revoke_tokens",)

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at <= timezone.now():
            return "expired"
        return "active"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.change_apitoken")

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(api_token_revoke(token=token) for token in queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiTokenCreateForm(request.POST or None)
        context: dict[str, Any] = {**self.admin_site.each_context(request), "opts": self.model._meta}
        if request.method == "POST" and form.is_valid():
            try:
                token, secret = api_token_create(
                    user=form.cleaned_data["user"],
                    name=form.cleaned_data["name"],
                    lifetime=timedelta(days=form.cleaned_data["days"]),
                )
            except ValidationError as error:
                for field, field_messages in field_errors(error).items():
                    form.add_error(
                        {"lifetime": "days", "name": "name", "user": "user"}.get(field), field_messages
                    )
            else:
                self.log_addition(request, token, [{"added": {}}])
                context.update({"title": "API token created", "token": token, "secret": secret})
                response = TemplateResponse(request, "admin/feedback/apitoken/created.html", context)
                response["Cache-Control"] = "no-store"
                return response
        context.update({"title": "Add API token", "form": form})
        return TemplateResponse(request, "admin/feedback/apitoken/add.html", context)
