"""Who may use the API: data engineers and admins; see the package docstring for the reasoning."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from feedback.models import ProjectMembership, ProjectRole
from feedback.roles import DATA_ENGINEERS_GROUP

_CACHE_ATTRIBUTE = "_rankwise_reads_datasets"


def reads_datasets(user: User | AnonymousUser | None) -> bool:
    """Admins (staff) and members of the data engineers group; remembered on the user object, so the
    permission check and the scoped selectors of one request ask the database once."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    cached = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is None:
        cached = user.is_staff or user.groups.filter(name=DATA_ENGINEERS_GROUP).exists()
        setattr(user, _CACHE_ATTRIBUTE, cached)
    return bool(cached)


class ReadsDatasets(BasePermission):
    """Data engineers and admins, for reads and writes alike. Anonymous requests fail authentication
    first (401); signed-in people of other roles get 403."""

    message = "This API is for data engineers and admins; your account has neither role."

    def has_permission(self, request: Request, view: Any) -> bool:
        return reads_datasets(request.user)


def reviews_project(user: User | AnonymousUser | None, slug: str) -> bool:
    """A reviewer or manager of the project named by `slug`."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return ProjectMembership.objects.filter(
        project__slug=slug, user=user, role__in=(ProjectRole.REVIEWER, ProjectRole.MANAGER)
    ).exists()


class ReadsReviewQueue(BasePermission):
    """The review endpoints: data engineers and admins (as everywhere), and the project's own reviewers
    and managers, on that project only. Deciding asks more of the service: a reviewer's or manager's
    role there, or staff."""

    message = "The review queue is for the project's reviewers and managers, data engineers and admins."

    def has_permission(self, request: Request, view: Any) -> bool:
        return reads_datasets(request.user) or reviews_project(request.user, view.kwargs.get("slug", ""))
