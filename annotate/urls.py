from django.urls import path

from annotate import review_views, views

app_name = "annotate"

urlpatterns = [
    path("", views.project_list, name="projects"),
    path("projects/<slug:slug>/annotate", views.workspace, name="workspace"),
    path("projects/<slug:slug>/guidelines", views.guidelines, name="guidelines"),
    path("projects/<slug:slug>/answers", views.my_answers, name="my_answers"),
    path(
        "projects/<slug:slug>/assignments/<int:assignment_id>/judgment",
        views.judgment_create,
        name="judgment",
    ),
    path(
        "projects/<slug:slug>/assignments/<int:assignment_id>/skip", views.assignment_skip_view, name="skip"
    ),
    path("projects/<slug:slug>/assignments/<int:assignment_id>/draft", views.draft_view, name="draft"),
    path("projects/<slug:slug>/assignments/<int:assignment_id>/answer", views.answer_create, name="answer"),
    path("projects/<slug:slug>/review", review_views.review_queue, name="review_queue"),
    path("projects/<slug:slug>/review/next", review_views.review_next, name="review_next"),
    path(
        "projects/<slug:slug>/review/answers/next", review_views.answer_review_next, name="answer_review_next"
    ),
    path(
        "projects/<slug:slug>/review/answers/<int:answer_id>",
        review_views.answer_review_page,
        name="answer_review",
    ),
    path(
        "projects/<slug:slug>/review/answers/<int:answer_id>/preview",
        review_views.answer_review_preview,
        name="answer_review_preview",
    ),
    path(
        "projects/<slug:slug>/review/answers/<int:answer_id>/decision",
        review_views.answer_review_decision,
        name="answer_review_decision",
    ),
    path("projects/<slug:slug>/review/<int:item_id>", review_views.review_item, name="review_item"),
    path(
        "projects/<slug:slug>/review/<int:item_id>/decision",
        review_views.review_decision,
        name="review_decision",
    ),
]
