"""What several admin modules share: escaped HTML for untrusted values, a service's errors by field,
and the read-only bases for rows that only services write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


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


def field_errors(error: ValidationError) -> dict[str, list[str]]:
    """A service's ValidationError as field → messages (errors not tied to a field under NON_FIELD_ERRORS)."""
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {NON_FIELD_ERRORS: error.messages}


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
