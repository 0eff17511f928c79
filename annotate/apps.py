from django.apps import AppConfig
from django.db.backends.signals import connection_created


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate.statistics import sqlite_median_register

        # The demo's SQLite lacks the median that annotator statistics take; PostgreSQL has its own.
        connection_created.connect(sqlite_median_register, dispatch_uid="annotate.sqlite_median")
