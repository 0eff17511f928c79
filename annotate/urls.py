from django.urls import path

from annotate import views

app_name = "annotate"

urlpatterns = [
    path("", views.project_list, name="projects"),
    path("projects/<slug:slug>/annotate", views.workspace, name="workspace"),
    path("projects/<slug:slug>/guidelines", views.guidelines, name="guidelines"),
    path(
        "projects/<slug:slug>/assignments/<int:assignment_id>/judgment",
        views.judgment_create,
        name="judgment",
    ),
    path(
        "projects/<slug:slug>/assignments/<int:assignment_id>/skip", views.assignment_skip_view, name="skip"
    ),
]
