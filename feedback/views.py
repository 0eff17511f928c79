from pathlib import Path

from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import requires_csrf_token
from django.views.decorators.http import require_GET

from feedback.models import Export


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and readiness for load balancers and container health checks: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """`/favicon.ico`, which browsers ask for before (or without) reading a page's icon link: the site's
    icon. Resolved per request, so a missing static manifest cannot stop the site from starting."""
    response = HttpResponsePermanentRedirect(static("rankwise/favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


SERVER_ERROR_DETAIL = "The server failed to answer this request. The error was logged; try again later."


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    """The site's 500 (`handler500`), in the shape its caller reads: the REST API and the workspace's
    script get the JSON error body, `{"detail": "…"}`, as for every other status; a browser gets the
    page. Nothing about the failure is shown to either; Django logs it and mails the admins."""
    wants_json = request.path_info.startswith("/api/") or (
        request.get_preferred_type(["text/html", "application/json"]) == "application/json"
    )
    if wants_json:
        return JsonResponse({"detail": SERVER_ERROR_DETAIL}, status=500)
    return defaults.server_error(request)


def export_archive_response(export: Export, path: Path) -> FileResponse:
    """An export's archive as a download, for the admin and the API alike: an attachment that browsers
    neither sniff nor cache."""
    response = FileResponse(
        path.open("rb"), as_attachment=True, filename=path.name, content_type="application/zip"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["ETag"] = f'"{export.file_sha256}"'
    return response
