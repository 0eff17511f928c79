"""Request body parsers beyond JSON and multipart."""

from __future__ import annotations

from typing import IO, Any

from rest_framework.parsers import BaseParser


class JsonLinesBody:
    """A JSON Lines request body, left unread: the prompt import service streams it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


class JsonLinesParser(BaseParser):
    media_type = "application/x-ndjson"

    # Typed Any: DRF's stubs expect a mapping, and this parser hands the view the unread body instead.
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return JsonLinesBody(stream)
