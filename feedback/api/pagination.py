"""Cursor pagination: stable under inserts, no counts, bounded pages.

A cursor is opaque (`next` and `previous` are whole URLs to follow) and signed: its position goes into
a query filter, so only positions this server wrote are accepted, and only by the ordering that wrote
them. `page_size` is 1 to 1000 (default 100). A bad cursor or page size is a 400 naming the parameter,
like any other bad query value.
"""

from __future__ import annotations

from typing import Any, NoReturn, cast

from django.core import signing
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

from feedback.api.errors import InvalidInput

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class ApiCursorPagination(CursorPagination):
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering: Any = ("id",)

    @property
    def query_parameters(self) -> frozenset[str]:
        return frozenset({self.cursor_query_param, self.page_size_query_param})

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise InvalidInput(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]},
                detail="Invalid query parameter.",
            )
        return int(raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: take it from a `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]

    def _salt(self) -> str:
        return "feedback.api.cursor:" + ",".join(self.ordering)

    def encode_cursor(self, cursor: Cursor) -> str:
        token = signing.dumps([cursor.offset, cursor.reverse, cursor.position], salt=self._salt())
        assert self.base_url is not None  # set by paginate_queryset before any link is made
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def decode_cursor(self, request: Request) -> Cursor | None:
        raw = request.query_params.get(self.cursor_query_param)
        if not raw:  # absent, or empty as a form leaves it: the first page
            return None
        try:
            offset, reverse, position = signing.loads(raw, salt=self._salt())
        except (signing.BadSignature, ValueError, TypeError):
            self._invalid_cursor()
        if (
            not isinstance(offset, int)
            or not 0 <= offset <= self.offset_cutoff
            or not isinstance(reverse, bool)
            or not (position is None or isinstance(position, str))
        ):
            self._invalid_cursor()
        # DRF's stubs type the position as an int; it is the str() of the first ordering field's value.
        return Cursor(offset=offset, reverse=reverse, position=cast(Any, position))

    def _invalid_cursor(self) -> NoReturn:
        raise InvalidInput(
            {self.cursor_query_param: ["Invalid cursor: follow the `next` or `previous` links as given."]},
            detail="Invalid query parameter.",
        )


class IdPagination(ApiCursorPagination):
    ordering = ("id",)


class NamePagination(ApiCursorPagination):
    ordering = ("name", "id")


class NewestFirstPagination(ApiCursorPagination):
    ordering = ("-created_at", "-id")


class JudgmentPagination(ApiCursorPagination):
    """By (updated_at, id): the order incremental pulls (`updated_after`) walk, on its own index."""

    ordering = ("updated_at", "id")
