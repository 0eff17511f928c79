"""What several admin modules share: escaped HTML for untrusted values, a service's errors by field,
an import's bad lines as form errors, and the read-only bases for rows that only services write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import User
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import Http404, HttpRequest
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.models import Project
from feedback.services.prompts import MAX_REPORTED_ERRORS, PromptImportError

# How many bad lines an upload page lists before summarising the rest.
IMPORT_ERRORS_SHOWN = 50


def percent(done: int, total: int) -> str:
    return f"{done}/{total} ({100 * done // total}%)" if total else "0/0"


def key_value_table(data: Mapping[str, Any]) -> SafeString:
    """A JSON object as a two-column table; nested values are shown as JSON, everything escaped."""
    return format_html(
        "<table><tbody>{}</tbody></table>",
        format_html_join(
            "",
            '<tr><th scope="row">{}</th><td><span style="white-space: pre-wrap">{}</span></td></tr>',
            (
                (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
                for key, value in data.items()
            ),
        ),
    )


def local_time(moment: datetime) -> str:
    """A moment as the admin writes its own: in the site's time zone and date format."""
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def project_page_object(
    model_admin: admin.ModelAdmin[Project], request: HttpRequest, object_id: str, *, change: bool = False
) -> Project:
    """The project of one of its admin pages (quality, leaderboard, comparing answers): 404 when there is
    none, 403 unless the user may view it (`change`: change it)."""
    project = model_admin.get_object(request, unquote(object_id))
    if project is None:
        raise Http404("No such project.")
    allowed = model_admin.has_change_permission if change else model_admin.has_view_permission
    if not allowed(request, project):
        raise PermissionDenied
    return project


def staff_user(request: HttpRequest) -> User:
    """The user of an admin view: `admin_view` has already sent anyone but logged-in staff to the login."""
    user = request.user
    assert isinstance(user, User)
    return user


def field_errors(error: ValidationError) -> dict[str, list[str]]:
    """A service's ValidationError as field → messages (errors not tied to a field under NON_FIELD_ERRORS)."""
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {NON_FIELD_ERRORS: error.messages}


def import_error_messages(file_name: str, error: PromptImportError) -> list[str]:
    """A refused file's form errors: what happened, then each bad line with its number (the first
    `IMPORT_ERRORS_SHOWN`, then how many more)."""
    shown = [str(line_error) for line_error in error.errors[:IMPORT_ERRORS_SHOWN]]
    hidden = len(error.errors) - len(shown)
    if hidden or error.truncated:
        at_least = "at least " if error.truncated else ""
        shown.append(
            f"… and {at_least}{hidden} more bad line(s) (the first {MAX_REPORTED_ERRORS} are counted)"
        )
    return [f"{file_name}: {error}", *shown]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """For rows only services write (leases, judgments, statistics): staff read them, nobody edits them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
