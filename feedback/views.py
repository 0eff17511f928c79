from pathlib import Path

from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from feedback.models import Export


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and readiness for load balancers and container health checks: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


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
