"""Site URLs: the annotator's workspace at the root, the admin, and the REST API under /api/."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from feedback import views

admin.site.site_header = "Rankwise administration"
admin.site.site_title = "Rankwise"
admin.site.index_title = "Projects, prompts, checkpoints and judgments"
# The app list beside every page would take 300 px of a 1366 px laptop screen from the lists and forms;
# the home page and the breadcrumbs lead everywhere it does.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", include("annotate.urls")),
    path("healthz", views.healthz, name="healthz"),
    # Browsers that ask before reading the page's icon link get the same icon.
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("feedback.api.urls")),
]

handler500 = "feedback.views.server_error"
