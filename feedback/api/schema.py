"""OpenAPI generation: query parameters from each view's `query_class`, and the error responses.

Every operation documents the shared error body (`Error`) for the statuses any API request can get
(400, 401, 403, 429), 404 where the path names a resource, and 415 where it takes a body; operations
add their own (409, 410) where they have them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "The body of every error response.",
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "object",
            "description": "Field (dotted for nested fields) → messages; only where fields are at fault.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail"],
}
ERROR_DESCRIPTIONS = {
    "400": "Invalid input: unknown or bad query parameters, or a bad body; `errors` names each.",
    "401": "No credentials, or a token that is unknown, expired or revoked.",
    "403": "Signed in, but neither a data engineer nor an admin.",
    "404": "No such resource.",
    "409": "The resource is not in a state that allows this.",
    "410": "The resource is gone.",
    "415": "The body's content type is not one this operation takes.",
    "429": "Rate limited: retry after `Retry-After` seconds.",
}


class ApiAutoSchema(AutoSchema):
    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        query_class = getattr(self.view, "query_class", None)
        if query_class is not None and self.method in ("GET", "HEAD"):
            parameters.insert(0, query_class)
        return parameters


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: the shared error body on every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            codes = ["400", "401", "403", "429"]
            if "{" in path:
                codes.append("404")
            if "requestBody" in operation:
                codes.append("415")
            codes.extend(code for code in ("409", "410") if code in responses)
            for code in codes:
                response = responses.setdefault(code, {"description": ERROR_DESCRIPTIONS[code]})
                response["content"] = {"application/json": {"schema": ERROR_REF}}
    return result
