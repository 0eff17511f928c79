from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback data"
    default_auto_field = "django.db.models.BigAutoField"
