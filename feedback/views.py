from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from feedback.selectors import projects_for_user


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "feedback/home.html", {"projects": projects_for_user(user=request.user)})


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and readiness for load balancers and container health checks: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
