"""One error shape for the whole API: `{"detail": "…", "errors": {"<field>": ["…"]}}`.

`errors` appears only where fields are at fault (400). Nested field errors are flattened to dotted
names (`sampling.temperature`), and errors not tied to a field sit under `non_field_errors`. The
annotation endpoints answer with the same shape (`annotate.views.error_response`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.exceptions import APIException, ErrorDetail, ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

NON_FIELD_ERRORS = api_settings.NON_FIELD_ERRORS_KEY
INVALID_INPUT = "Invalid input: fix the fields named in `errors`."


class InvalidInput(ValidationError):
    """A 400 with field messages and a summary of our own in `detail`."""

    def __init__(self, errors: dict[str, list[str]] | dict[str, Any], *, detail: str = INVALID_INPUT) -> None:
        super().__init__(errors)
        self.summary = detail


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is not in a state that allows this."
    default_code = "conflict"


class Unprocessable(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request is well formed but contradicts what is stored."
    default_code = "unprocessable"


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "The resource is gone."
    default_code = "gone"


def field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as {dotted field: [messages]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in field_errors(value, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return {prefix or NON_FIELD_ERRORS: [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            # Lists of objects (a list serializer's items) are named by their index.
            name = f"{prefix}.{index}" if prefix else str(index)
            for field, messages in field_errors(item, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    return {prefix or NON_FIELD_ERRORS: [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, WWW-Authenticate, Retry-After), with the body reshaped."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: a 500, which Django reports and renders
    if isinstance(exc, ValidationError):
        body: dict[str, Any] = {
            "detail": getattr(exc, "summary", INVALID_INPUT),
            "errors": field_errors(exc.detail),
        }
    else:
        detail = getattr(exc, "detail", None)
        if isinstance(detail, dict | list):
            # Our APIExceptions carry a message; a structured detail is unusual but kept readable.
            body = {"detail": "; ".join(f"{k}: {' '.join(v)}" for k, v in field_errors(detail).items())}
        else:
            body = {"detail": str(detail) if isinstance(detail, ErrorDetail | str) else str(exc)}
    response.data = body
    return response


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown URLs under /api/ answer in the API's shape, not with the site's HTML 404 page."""
    return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=404)


TOO_LARGE = (
    "The request body is larger than the limit of {limit:,} bytes: send less (a prompt file as a multipart "
    "upload or JSON Lines, which are streamed, not held in memory)."
)
GENERIC = {
    400: "Bad request.",
    403: "Forbidden.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "The request is too large.",
}


class ApiErrorsMiddleware:
    """Every error under /api/ in the API's shape, also those raised before a view answers: a body over
    `DATA_UPLOAD_MAX_MEMORY_SIZE` is a 413 naming the limit (Django would answer with its HTML 400 page),
    and any other error that is not JSON (a response made outside the API's views) becomes
    `{"detail": "…"}` with its status kept."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path_info.startswith("/api/") or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        detail = GENERIC.get(response.status_code, f"The request failed ({response.status_code}).")
        replaced = JsonResponse({"detail": detail}, status=response.status_code)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                replaced[header] = response[header]
        return replaced

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path_info.startswith("/api/") and isinstance(exception, RequestDataTooBig):
            return JsonResponse(
                {"detail": TOO_LARGE.format(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}, status=413
            )
        return None
