"""API views: parse (query and body), call a selector or a service, render. One view per resource shape.

Every view starts from a scoped queryset in `feedback.api.selectors`; the class-level `queryset`
attributes are empty and exist for the schema generator only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django.contrib.auth.models import User
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, Serializer

from feedback.api import selectors
from feedback.api.errors import Conflict, Gone, InvalidInput, Unprocessable, field_errors
from feedback.api.filters import (
    MAX_ID,
    CheckpointQuery,
    ComparisonQuery,
    ExportQuery,
    GenerationRunQuery,
    JudgmentQuery,
    ProjectQuery,
    PromptQuery,
    ReviewQueueQuery,
    query_parameters_check,
    query_validate,
)
from feedback.api.pagination import (
    ApiCursorPagination,
    IdPagination,
    JudgmentPagination,
    NamePagination,
    NewestFirstPagination,
)
from feedback.api.parsers import JsonLinesBody, JsonLinesParser
from feedback.api.permissions import ReadsReviewQueue
from feedback.api.serializers import (
    EXPORT_LIST_OPTIONS,
    EXPORT_OPTION_NAMES,
    AnnotatorQualitySerializer,
    CheckpointSerializer,
    ComparisonSerializer,
    ExportCreateSerializer,
    ExportSerializer,
    ExportStatusSerializer,
    ExportStreamQuery,
    GenerationRunCreateSerializer,
    GenerationRunSerializer,
    GenerationRunStatusSerializer,
    GoldImportReportSerializer,
    GoldItemSerializer,
    GoldUploadSerializer,
    HeadToHeadQuery,
    HeadToHeadSerializer,
    JudgmentSerializer,
    LeaderboardMatricesSerializer,
    LeaderboardQuery,
    LeaderboardSerializer,
    ProjectQualitySerializer,
    ProjectSerializer,
    PromptImportReportSerializer,
    PromptSerializer,
    PromptUploadSerializer,
    ReviewDecisionRequestSerializer,
    ReviewDecisionSerializer,
    ReviewItemSerializer,
)
from feedback.export.options import SPLITS, ExportOptions, ExportOptionsError
from feedback.models import (
    PEOPLE,
    AnnotatorQuality,
    AnnotatorStanding,
    Comparison,
    ComparisonResponse,
    Export,
    GenerationRun,
    Judgment,
    LeaderboardReport,
    PolicyCheckpoint,
    Project,
    ProjectQuality,
    Prompt,
    ReviewItem,
)
from feedback.selectors import judgment_examples
from feedback.services.exports import export_archive, export_create, export_stream_jsonl
from feedback.services.generation import generation_run_start
from feedback.services.gold import gold_import
from feedback.services.leaderboard import (
    LeaderboardFilters,
    LeaderboardFiltersError,
    head_to_head_report,
    is_stale,
    leaderboard_request,
    participant_ids,
    project_marks,
)
from feedback.services.prompts import PromptImportError, prompt_file_format_for, prompts_import
from feedback.services.review import (
    ReviewConflict,
    ReviewForbidden,
    ReviewInvalid,
    ReviewKeyReused,
    review_decide,
)
from feedback.views import export_archive_response

READ_METHODS = ("GET", "HEAD")


class ApiView(generics.GenericAPIView):
    """The base of every API view: refuses query parameters the view does not declare.

    A view declares its query parameters as `query_class` (a serializer, which also documents them);
    list views add their paginator's `cursor` and `page_size`. Only reads take query parameters. The
    check runs after authentication, permissions and throttling, so strangers learn nothing from it.
    """

    query_class: type[Serializer] | None = None
    # Each declared query parameter → the ORM lookup it filters on (or a function of its validated value
    # giving a Q). Fixed here, never taken from the request: the allowlist is the query class.
    query_filters: ClassVar[dict[str, str | Callable[[Any], Q]]] = {}
    metadata_class = None  # no OPTIONS introspection: the OpenAPI schema describes every endpoint
    query: dict[str, Any]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            # A method the endpoint does not take is a 405 (DRF answers it next), whatever its query.
            self.query = {}
            return
        self.query = self.parse_query(request)

    def parse_query(self, request: Request) -> dict[str, Any]:
        if request.method not in READ_METHODS:
            query_parameters_check(request.query_params, allowed=())
            return {}
        allowed: set[str] = set()
        if self.query_class is not None:
            allowed |= set(self.query_class().fields)
        if isinstance(self.paginator, ApiCursorPagination):
            allowed |= self.paginator.query_parameters
        query_parameters_check(request.query_params, allowed=allowed)
        if self.query_class is None:
            return {}
        return query_validate(self.query_class, request.query_params.dict())

    def query_filtered(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """`queryset` narrowed by every declared query parameter the request gave."""
        for name, lookup in self.query_filters.items():
            if name in self.query:
                value = self.query[name]
                queryset = queryset.filter(lookup(value) if callable(lookup) else Q(**{lookup: value}))
        return queryset


def _created(serializer: BaseSerializer, location: str) -> Response:
    return Response(serializer.data, status=status.HTTP_201_CREATED, headers={"Location": location})


def _service_errors(error: DjangoValidationError) -> dict[str, list[str]]:
    errors = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    return {
        ("non_field_errors" if name == NON_FIELD_ERRORS else name): messages
        for name, messages in errors.items()
    }


def _uploaded_source(request: Request, upload_class: type[Serializer]) -> tuple[Any, dict[str, Any] | None]:
    """The file an import reads: a JSON Lines body as it is, or the multipart `file` (with the upload's
    other validated fields)."""
    data = request.data
    if isinstance(data, JsonLinesBody) or request.content_type.startswith(JsonLinesParser.media_type):
        # DRF hands an empty body over as {}; the service then reports a file without records.
        return (data if isinstance(data, JsonLinesBody) else io.BytesIO(b"")), None
    upload = upload_class(data=data)
    upload.is_valid(raise_exception=True)
    return upload.validated_data["file"], dict(upload.validated_data)


@contextmanager
def _import_errors() -> Iterator[None]:
    """A refused file (PromptImportError) as a 400 listing every bad line under `errors.file`."""
    try:
        yield
    except PromptImportError as error:
        lines = [str(line_error) for line_error in error.errors]
        if error.truncated:
            lines.append("… more bad lines, not listed")
        raise InvalidInput({"file": lines}, detail=str(error)) from None


class PassThroughNegotiation(BaseContentNegotiation):
    """For file and stream downloads: whatever the client accepts, the body is the file; errors are JSON."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


# --- projects --------------------------------------------------------------------------------------------


@extend_schema(tags=["projects"])
class ProjectList(ApiView, generics.ListAPIView):
    """Projects with their progress: prompts, comparisons (completed of total) and judgments."""

    queryset = Project.objects.none()
    serializer_class = ProjectSerializer
    pagination_class = NamePagination
    query_class = ProjectQuery

    query_filters = {"is_active": "is_active"}

    def get_queryset(self) -> QuerySet[Project]:
        return self.query_filtered(selectors.projects_for_reader(user=self.request.user))


@extend_schema(tags=["projects"])
class ProjectDetail(ApiView, generics.RetrieveAPIView):
    """One project, by slug, with its progress."""

    queryset = Project.objects.none()
    serializer_class = ProjectSerializer
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[Project]:
        return selectors.projects_for_reader(user=self.request.user)


@extend_schema(tags=["prompts"])
class ProjectPrompts(ApiView, generics.ListAPIView):
    """A project's prompts (GET), and the bulk import of a prompt file into it (POST)."""

    queryset = Prompt.objects.none()
    serializer_class = PromptSerializer
    pagination_class = IdPagination
    query_class = PromptQuery
    parser_classes = [MultiPartParser, JsonLinesParser]

    def project(self) -> Project:
        project = selectors.project_get_for_reader(user=self.request.user, slug=self.kwargs["slug"])
        if project is None:
            raise Http404("No such project.")
        return project

    query_filters = {"category": "category", "external_id": "external_id"}

    def get_queryset(self) -> QuerySet[Prompt]:
        return self.query_filtered(
            selectors.prompts_for_reader(user=self.request.user, project=self.project())
        )

    @extend_schema(
        summary="Import a prompt file into the project",
        description=(
            "A JSON Lines or CSV file as multipart `file` (format from the file name or `format`), or a "
            "JSON Lines body (`Content-Type: application/x-ndjson`). All or nothing: a file with any bad "
            "line imports nothing and the 400 lists every bad line under `errors.file`. Idempotent by "
            "external id: unchanged prompts are skipped, changed ones reported as conflicts and kept."
        ),
        request={"multipart/form-data": PromptUploadSerializer, "application/x-ndjson": OpenApiTypes.BINARY},
        responses={200: PromptImportReportSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        project = self.project()
        source, upload = _uploaded_source(request, PromptUploadSerializer)
        file_format = "jsonl"
        if upload is not None:
            try:
                file_format = upload.get("format") or prompt_file_format_for(source.name)
            except ValueError as error:
                raise InvalidInput({"format": [str(error)]}) from None
        with _import_errors():
            report = prompts_import(project=project, source=source, file_format=file_format)  # type: ignore[arg-type]
        return Response(PromptImportReportSerializer(report).data)


# --- checkpoints -----------------------------------------------------------------------------------------


@extend_schema(tags=["checkpoints"])
class CheckpointList(ApiView, generics.ListAPIView):
    """Policy checkpoints, newest first; `parent` gives each one's lineage."""

    queryset = PolicyCheckpoint.objects.none()
    serializer_class = CheckpointSerializer
    pagination_class = NewestFirstPagination
    query_class = CheckpointQuery

    query_filters = {"name": "name", "kind": "kind", "parent": "parent_id"}

    def get_queryset(self) -> QuerySet[PolicyCheckpoint]:
        return self.query_filtered(selectors.checkpoints_for_reader(user=self.request.user))


@extend_schema(tags=["checkpoints"])
class CheckpointDetail(ApiView, generics.RetrieveAPIView):
    """One checkpoint; `parent` is the checkpoint it was trained from."""

    queryset = PolicyCheckpoint.objects.none()
    serializer_class = CheckpointSerializer

    def get_queryset(self) -> QuerySet[PolicyCheckpoint]:
        return selectors.checkpoints_for_reader(user=self.request.user)


# --- generation runs -------------------------------------------------------------------------------------


@extend_schema(tags=["generation runs"])
class GenerationRunList(ApiView, generics.ListAPIView):
    """Generation runs, newest first (GET); start one (POST)."""

    queryset = GenerationRun.objects.none()
    serializer_class = GenerationRunSerializer
    pagination_class = NewestFirstPagination
    query_class = GenerationRunQuery

    query_filters = {
        "project": "project__slug",
        "status": "status",
        # Runs where the checkpoint took part, on either side.
        "checkpoint": lambda checkpoint_id: (
            Q(checkpoint_id=checkpoint_id) | Q(opponent_checkpoint_id=checkpoint_id)
        ),
    }

    def get_queryset(self) -> QuerySet[GenerationRun]:
        return self.query_filtered(selectors.generation_runs_for_reader(user=self.request.user))

    @extend_schema(
        summary="Start a generation run",
        description=(
            "Records the run over all of the project's prompts and queues its chunks for the GPU workers; "
            "answers 201 with the run (status `queued`). Poll its status endpoint. Missing values take "
            "the project's defaults; a 400 names the fields at fault and starts nothing."
        ),
        request=GenerationRunCreateSerializer,
        responses={201: GenerationRunSerializer},
    )
    def post(self, request: Request) -> Response:
        payload = GenerationRunCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        values = payload.validated_data
        user = request.user
        errors: dict[str, list[str]] = {}
        project = selectors.project_get_for_reader(user=user, slug=values["project"])
        if project is None:
            errors["project"] = [f"No project with slug {values['project']!r}."]
        checkpoints = selectors.checkpoints_for_reader(user=user)
        chosen: dict[str, PolicyCheckpoint | None] = {}
        for name in ("checkpoint", "opponent_checkpoint"):
            chosen[name] = None
            if name in values:
                chosen[name] = checkpoints.filter(pk=values[name]).first()
                if chosen[name] is None:
                    errors[name] = [f"No checkpoint with id {values[name]}."]
        if errors:
            raise InvalidInput(errors, detail="No run was started: fix the fields named in `errors`.")
        assert project is not None
        try:
            run = generation_run_start(
                project=project,
                checkpoint=chosen["checkpoint"],
                opponent_checkpoint=chosen["opponent_checkpoint"],
                samples_per_prompt=values.get("samples_per_prompt"),
                sampling=values.get("sampling"),
                seed=values.get("seed"),
                chunk_size=values.get("chunk_size"),
                created_by=user,
            )
        except DjangoValidationError as error:
            raise InvalidInput(
                _service_errors(error), detail="No run was started: fix the fields named in `errors`."
            ) from None
        run = selectors.generation_runs_for_reader(user=user).get(pk=run.pk)
        return _created(GenerationRunSerializer(run), reverse("api:generation-run-detail", args=[run.pk]))


@extend_schema(tags=["generation runs"])
class GenerationRunDetail(ApiView, generics.RetrieveAPIView):
    """One generation run: what it generates with, and how far it got."""

    queryset = GenerationRun.objects.none()
    serializer_class: type[BaseSerializer] = GenerationRunSerializer

    def get_queryset(self) -> QuerySet[GenerationRun]:
        return selectors.generation_runs_for_reader(user=self.request.user)


@extend_schema(tags=["generation runs"])
class GenerationRunStatus(GenerationRunDetail):
    """A run's status and progress only: what a script polls until `is_finished`."""

    serializer_class = GenerationRunStatusSerializer


# --- comparisons -----------------------------------------------------------------------------------------


@extend_schema(tags=["comparisons"])
class ComparisonList(ApiView, generics.ListAPIView):
    """Comparisons with their entries in display order: position, label, response and its checkpoint."""

    queryset = Comparison.objects.none()
    serializer_class = ComparisonSerializer
    pagination_class = IdPagination
    query_class = ComparisonQuery

    query_filters = {
        "project": "project__slug",
        "status": "status",
        "prompt": "prompt_id",
        "generation_run": "generation_run_id",
        "created_after": "created_at__gt",
        "created_before": "created_at__lt",
    }

    def get_queryset(self) -> QuerySet[Comparison]:
        return self.query_filtered(selectors.comparisons_for_reader(user=self.request.user))


@extend_schema(tags=["comparisons"])
class ComparisonDetail(ApiView, generics.RetrieveAPIView):
    """One comparison with its entries in display order."""

    queryset = Comparison.objects.none()
    serializer_class = ComparisonSerializer

    def get_queryset(self) -> QuerySet[Comparison]:
        return selectors.comparisons_for_reader(user=self.request.user)


# --- judgments -------------------------------------------------------------------------------------------


@extend_schema(tags=["judgments"])
class JudgmentList(ApiView, generics.ListAPIView):
    """Judgments in (updated_at, id) order. For incremental pulls, follow `next` to the end, then come
    back later with `updated_after` (see its description)."""

    queryset = Judgment.objects.none()
    serializer_class = JudgmentSerializer
    pagination_class = JudgmentPagination
    query_class = JudgmentQuery

    query_filters = {
        "project": "comparison__project__slug",
        "comparison": "comparison_id",
        "annotator": "annotator__username",
        "updated_after": "updated_at__gt",
    }

    def get_queryset(self) -> QuerySet[Judgment]:
        return self.query_filtered(selectors.judgments_for_reader(user=self.request.user))


@extend_schema(tags=["judgments"])
class JudgmentDetail(ApiView, generics.RetrieveAPIView):
    """One judgment."""

    queryset = Judgment.objects.none()
    serializer_class = JudgmentSerializer

    def get_queryset(self) -> QuerySet[Judgment]:
        return selectors.judgments_for_reader(user=self.request.user)


# --- exports ---------------------------------------------------------------------------------------------


@extend_schema(tags=["exports"])
class ExportList(ApiView, generics.ListAPIView):
    """Exports, newest first (GET); create one (POST)."""

    queryset = Export.objects.none()
    serializer_class = ExportSerializer
    pagination_class = NewestFirstPagination
    query_class = ExportQuery

    query_filters = {"status": "status"}

    def get_queryset(self) -> QuerySet[Export]:
        return self.query_filtered(selectors.exports_for_reader(user=self.request.user))

    @extend_schema(
        summary="Create an export",
        description=(
            "The body is the export options (see ExportCreate); `snapshot_of` re-exports exactly the "
            "judgments of an earlier export. Answers 201 with the export, usually `pending`: poll its "
            "status, then download its archive. A 400 names the options at fault and creates nothing."
        ),
        request=ExportCreateSerializer,
        responses={201: ExportSerializer},
    )
    def post(self, request: Request) -> Response:
        data = request.data
        if not isinstance(data, dict):
            raise InvalidInput({"non_field_errors": ["The body must be a JSON object of export options."]})
        values = dict(data)
        errors: dict[str, list[str]] = {}
        snapshot: Export | None = None
        if "snapshot_of" in values:
            snapshot_id = values.pop("snapshot_of")
            if (
                isinstance(snapshot_id, bool)
                or not isinstance(snapshot_id, int)
                or not 1 <= snapshot_id <= MAX_ID
            ):
                errors["snapshot_of"] = ["The id of an earlier export."]
            else:
                snapshot = selectors.exports_for_reader(user=request.user).filter(pk=snapshot_id).first()
                if snapshot is None:
                    errors["snapshot_of"] = [f"No export with id {snapshot_id}."]
        try:
            options = ExportOptions.from_mapping(values)
        except ExportOptionsError as error:
            errors.update(error.errors)
        if errors:
            raise InvalidInput(errors, detail="No export was created: fix the fields named in `errors`.")
        export = export_create(options=options, created_by=request.user, snapshot_of=snapshot)
        export = selectors.exports_for_reader(user=request.user).get(pk=export.pk)
        return _created(ExportSerializer(export), reverse("api:export-detail", args=[export.pk]))


@extend_schema(tags=["exports"])
class ExportDetail(ApiView, generics.RetrieveAPIView):
    """One export: its options, snapshot, status and, once completed, its archive's name, size and SHA-256."""

    queryset = Export.objects.none()
    serializer_class: type[BaseSerializer] = ExportSerializer

    def get_queryset(self) -> QuerySet[Export]:
        return selectors.exports_for_reader(user=self.request.user)


@extend_schema(tags=["exports"])
class ExportStatus(ExportDetail):
    """An export's status only, with the download URL once it is completed: what a script polls."""

    serializer_class = ExportStatusSerializer


@extend_schema(tags=["exports"])
class ExportDownload(ExportDetail):
    """The archive of a completed export, as an attachment."""

    content_negotiation_class = PassThroughNegotiation

    @extend_schema(
        summary="Download an export's archive",
        description="The .zip archive of a completed export; 409 while it is pending or running, or failed.",
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The archive."),
            409: OpenApiResponse(description="Not completed (yet)."),
            410: OpenApiResponse(description="The archive is no longer on the server."),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> FileResponse:  # type: ignore[override]
        export = self.get_object()
        if export.status != Export.Status.COMPLETED:
            raise Conflict(
                f"Export {export.pk} is {export.status}; its archive can be downloaded once it is completed."
            )
        path = export_archive(export)
        if path is None:
            raise Gone(
                f"The archive of export {export.pk} is no longer on the server; create the export again "
                f"with snapshot_of={export.pk} for the same data."
            )
        return export_archive_response(export, path)


@extend_schema(tags=["exports"])
class ExportStream(ApiView):
    """JSON Lines of an export's rows, streamed as they are read: a fresh snapshot, no archive."""

    query_class = ExportStreamQuery  # documents the parameters; ExportOptions.from_mapping parses them
    content_negotiation_class = PassThroughNegotiation

    def parse_query(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        query_parameters_check(
            params, allowed=EXPORT_OPTION_NAMES | {"split"}, repeatable=EXPORT_LIST_OPTIONS
        )
        values: dict[str, Any] = {}
        for name in params:
            given = params.getlist(name)
            values[name] = given if len(given) > 1 else given[0]
        errors: dict[str, list[str]] = {}
        split = values.pop("split", None)
        if split is not None and split not in SPLITS:
            errors["split"] = [f"{split!r} is not one of: {', '.join(SPLITS)}."]
        if values.get("output", "jsonl") != "jsonl":
            errors["output"] = ["This endpoint streams JSON Lines: use output=jsonl, or create an export."]
        try:
            options = ExportOptions.from_mapping(values)
        except ExportOptionsError as error:
            for name, messages in field_errors(error.errors).items():
                errors.setdefault(name, []).extend(messages)
        if errors:
            raise InvalidInput(errors, detail="Invalid export options: fix the ones named in `errors`.")
        return {"options": options, "split": split}

    @extend_schema(
        summary="Stream an export's rows as JSON Lines",
        description=(
            "The rows an export with these options would write, as JSON Lines, streamed from a fresh "
            "snapshot without writing an archive. Lists are comma-separated or repeated parameters."
        ),
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.BINARY, description="One JSON object per line."
            )
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        options: ExportOptions = self.query["options"]
        split: str | None = self.query["split"]
        name = f"rankwise-{options.format}{f'-{split}' if split else ''}.jsonl"
        response = StreamingHttpResponse(
            export_stream_jsonl(options=options, split=split), content_type="application/x-ndjson"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response


# --- quality ---------------------------------------------------------------------------------------------


class ProjectScoped(ApiView):
    """A view under /projects/<slug>/, for readers of datasets only."""

    def project(self) -> Project:
        project = selectors.project_get_for_reader(user=self.request.user, slug=self.kwargs["slug"])
        if project is None:
            raise Http404("No such project.")
        return project


@extend_schema(tags=["quality"])
class ProjectGold(ProjectScoped, generics.ListAPIView):
    """A project's gold items with their expected verdicts (GET), and the import of gold items (POST)."""

    queryset = Comparison.objects.none()
    serializer_class = GoldItemSerializer
    pagination_class = IdPagination
    parser_classes = [MultiPartParser, JsonLinesParser]

    def get_queryset(self) -> QuerySet[Comparison]:
        return (
            Comparison.objects.filter(project=self.project(), is_gold=True)
            .select_related("prompt", "gold_verdict")
            .prefetch_related(
                Prefetch(
                    "entries", ComparisonResponse.objects.select_related("response").order_by("position")
                )
            )
        )

    @extend_schema(
        summary="Import gold items into the project",
        description=(
            "A JSON Lines file as multipart `file`, or a JSON Lines body (`Content-Type: application/x-ndjson`). "
            "Each line: `prompt` (or `messages`), optionally `id`, `category`, `metadata`, then `responses` (as "
            "many strings as the project compares), `expected` (by label, A being the first response of the "
            'line: "A", ["A", "tie"], or for rankings "C" or {"order": ["C", "A", "B"]}) and optionally '
            "`explanation`. All or nothing: a file with any bad line stores nothing and the 400 lists every bad "
            "line under `errors.file`. Lines whose id is already a gold item of the project are skipped."
        ),
        request={"multipart/form-data": GoldUploadSerializer, "application/x-ndjson": OpenApiTypes.BINARY},
        responses={200: GoldImportReportSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        project = self.project()
        source, _ = _uploaded_source(request, GoldUploadSerializer)
        user = request.user if isinstance(request.user, User) else None
        with _import_errors():
            report = gold_import(project=project, source=source, actor=user)
        return Response(GoldImportReportSerializer(report).data)


@extend_schema(
    tags=["quality"],
    responses={200: ProjectQualitySerializer, 404: OpenApiResponse(description="Not computed yet.")},
)
class ProjectQualityView(ProjectScoped):
    """The project's quality figures as last computed off the request path (celery beat, every few
    minutes while judgments arrive); `computed_at` says how fresh they are."""

    serializer_class = ProjectQualitySerializer

    def get(self, request: Request, slug: str) -> Response:
        project = self.project()
        quality = (
            ProjectQuality.objects.filter(project=project)
            .select_related("project")
            .order_by("-computed_at", "-pk")
            .first()
        )
        if quality is None:
            raise Http404(
                "No quality figures for this project yet: they are computed a few minutes after its first judgments."
            )
        people = {pair[key] for pair in quality.report["kappa"]["pairs"] for key in ("first", "second")}
        usernames = dict(User.objects.filter(pk__in=people).values_list("pk", "username"))
        return Response(ProjectQualitySerializer(quality, context={"usernames": usernames}).data)


@extend_schema(tags=["quality"])
class ProjectAnnotatorQuality(ProjectScoped, generics.ListAPIView):
    """Each annotator's figures in the project as last computed: gold accuracy with its Wilson interval,
    agreement with the majority of the others, position bias, speed, standing, and anomalies with their
    reasons."""

    queryset = AnnotatorQuality.objects.none()
    serializer_class = AnnotatorQualitySerializer
    pagination_class = IdPagination

    def get_queryset(self) -> QuerySet[AnnotatorQuality]:
        return AnnotatorQuality.objects.filter(project=self.project()).select_related("annotator")

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if "slug" in self.kwargs and selectors.project_get_for_reader(
            user=self.request.user, slug=self.kwargs["slug"]
        ):
            context["standings"] = {
                annotator: (status_value, reason)
                for annotator, status_value, reason in AnnotatorStanding.objects.filter(
                    project__slug=self.kwargs["slug"]
                ).values_list("annotator_id", "status", "reason")
            }
        return context


class ReviewScoped(ApiView):
    """A review endpoint under /projects/<slug>/: data engineers and admins, and the project's own
    reviewers and managers (others get 403, as everywhere in the API)."""

    permission_classes = [ReadsReviewQueue]

    def project(self) -> Project:
        project = selectors.project_get_for_review(user=self.request.user, slug=self.kwargs["slug"])
        if project is None:
            raise Http404("No such project.")
        return project


@extend_schema(tags=["review"])
class ProjectReviewQueue(ReviewScoped, generics.ListAPIView):
    """The project's review queue: comparisons that need a reviewer's final word (low agreement, a flag,
    a disputed gold item, a manager's pick), oldest first by id, each with what annotators saw and every
    judgment under a pseudonym stable within the project. `status` lists decided, sent back or retired
    items instead of the waiting ones."""

    queryset = ReviewItem.objects.none()
    serializer_class = ReviewItemSerializer
    pagination_class = IdPagination
    query_class = ReviewQueueQuery

    def get_queryset(self) -> QuerySet[ReviewItem]:
        return (
            ReviewItem.objects.filter(
                project=self.project(), status=self.query.get("status", ReviewItem.Status.PENDING)
            )
            .select_related("comparison__prompt", "comparison__gold_verdict", "decided_by")
            .prefetch_related(
                Prefetch(
                    "comparison__entries",
                    ComparisonResponse.objects.select_related("response").order_by("position"),
                ),
                Prefetch("comparison__judgments", Judgment.objects.order_by("created_at", "id")),
            )
        )


@extend_schema(tags=["review"])
class ReviewItemDecision(ReviewScoped):
    """Decide a waiting item: a final verdict, send it back for more judgments, or retire it."""

    serializer_class = ReviewDecisionSerializer

    @extend_schema(
        summary="Record a reviewer's decision on a review item",
        description=(
            "For the project's reviewers and managers (and admins); others get 403. Idempotent by "
            "`submission_key`: a retry with the same key and body answers 200 with the stored decision. "
            "409 when the item no longer waits (another reviewer decided it first); 422 when the key was "
            "used for another decision."
        ),
        request=ReviewDecisionRequestSerializer,
        responses={
            201: ReviewDecisionSerializer,
            200: ReviewDecisionSerializer,
            404: OpenApiResponse(description="No such item in this project."),
            409: OpenApiResponse(description="The item was already decided, sent back or retired."),
            422: OpenApiResponse(description="The submission key was used for another decision."),
        },
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        project = self.project()
        if not ReviewItem.objects.filter(project=project, pk=pk).exists():
            raise Http404("No such review item in this project.")
        reviewer = request.user
        assert isinstance(reviewer, User)
        body = request.data
        if not isinstance(body, dict):
            raise InvalidInput({"non_field_errors": ["Send a JSON object."]})
        unknown = sorted(set(body) - set(ReviewDecisionRequestSerializer().fields))
        if unknown:
            raise InvalidInput({name: ["Unknown field."] for name in unknown})
        try:
            result = review_decide(
                reviewer=reviewer,
                item_id=pk,
                submission_key=body.get("submission_key"),
                action=body.get("action"),
                verdict=body.get("verdict"),
                reason=body.get("reason", ""),
            )
        except ReviewInvalid as error:
            raise InvalidInput(error.errors) from None
        except ReviewForbidden as error:
            raise PermissionDenied(str(error)) from None
        except ReviewConflict as error:
            raise Conflict(str(error)) from None
        except ReviewKeyReused as error:
            raise Unprocessable(str(error)) from None
        decision = result.decision
        decision.replayed = result.replayed  # type: ignore[attr-defined]
        return Response(
            ReviewDecisionSerializer(decision).data,
            status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
        )


# --- the leaderboard --------------------------------------------------------------------------------------


class LeaderboardScoped(ProjectScoped):
    """A leaderboard endpoint: the filters are query parameters (`LeaderboardFilters`), the figures come
    from the cache (`leaderboard_request`), computed on a worker: 202 with `status: pending` until they
    exist (ask again after `Retry-After` seconds), then 200 with `fresh` saying whether judgments arrived
    since."""

    query_class: type[Serializer] | None = LeaderboardQuery
    extra_parameters: tuple[str, ...] = ()

    def parse_query(self, request: Request) -> dict[str, Any]:
        if request.method not in READ_METHODS:
            return super().parse_query(request)
        assert self.query_class is not None
        query_parameters_check(request.query_params, allowed=set(self.query_class().fields))
        values = request.query_params.dict()
        extra = {name: values.pop(name) for name in self.extra_parameters if name in values}
        errors: dict[str, list[str]] = {}
        for name in self.extra_parameters:
            if not extra.get(name):
                errors[name] = ["This parameter is required: a checkpoint's name."]
            elif len(extra[name]) > 200 or "\x00" in extra[name]:
                errors[name] = ["A checkpoint's name: at most 200 characters."]
            elif not participant_ids([extra[name]]):
                errors[name] = [f"No checkpoint is named {extra[name]!r} (nor is it {PEOPLE!r})."]
        try:
            filters = LeaderboardFilters.from_mapping(values)
        except LeaderboardFiltersError as error:
            errors.update(field_errors(error.errors))
        if errors:
            raise InvalidInput(
                errors, detail="Invalid leaderboard parameters: fix the ones named in `errors`."
            )
        return {"filters": filters, **extra}

    def state(self) -> tuple[Project, LeaderboardReport, dict[str, Any]]:
        project = self.project()
        row = leaderboard_request(project=project, filters=self.query["filters"])
        state = {
            "project": project,
            # Figures in hand are served as ready, even while newer ones are computed.
            "status": row.status if row.report is None else LeaderboardReport.Status.READY,
            "fresh": row.report is not None and not is_stale(row, project_marks(project)),
            "filters": row.filters,
            "computed_at": row.computed_at,
            "seconds": row.seconds,
            "high_water_mark": row.high_water_mark,
            "error": row.error,
        }
        return project, row, state

    def respond(self, row: LeaderboardReport, data: dict[str, Any]) -> Response:
        if row.report is None and row.status == LeaderboardReport.Status.PENDING:
            return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Retry-After": "5"})
        return Response(data)


LEADERBOARD_RESPONSES = {
    202: OpenApiResponse(
        description="Not computed yet: a worker is on it; ask again after Retry-After seconds."
    ),
    404: OpenApiResponse(description="No such project."),
}


@extend_schema(tags=["leaderboard"])
class ProjectLeaderboard(LeaderboardScoped):
    """The project's checkpoint leaderboard: Bradley–Terry scores with 95% bootstrap intervals, raw and
    length/style-controlled, ranks that respect the intervals, the first-position advantage, the style
    coefficients, a raw fit per prompt category, and the mean rating per checkpoint on each rubric axis;
    from the judgments the filters select (the export's filters, with the same names)."""

    serializer_class = LeaderboardSerializer

    @extend_schema(responses={200: LeaderboardSerializer, **LEADERBOARD_RESPONSES})
    def get(self, request: Request, slug: str) -> Response:
        _, row, state = self.state()
        return self.respond(row, LeaderboardSerializer({**state, "report": row.report}).data)


@extend_schema(tags=["leaderboard"])
class ProjectLeaderboardMatrices(LeaderboardScoped):
    """The battle matrix (battles between each two checkpoints, both orders) and the win-rate matrix (the
    row's share of wins against the column, ties half) of the leaderboard with these filters."""

    serializer_class = LeaderboardMatricesSerializer

    @extend_schema(responses={200: LeaderboardMatricesSerializer, **LEADERBOARD_RESPONSES})
    def get(self, request: Request, slug: str) -> Response:
        _, row, state = self.state()
        matrix = None
        if row.report is not None:
            matrix = dict(row.report["matrix"])
            names = dict(
                PolicyCheckpoint.objects.filter(pk__in=matrix["checkpoints"]).values_list("pk", "name")
            )
            matrix["checkpoints"] = [names.get(pk, str(pk)) for pk in matrix["checkpoints"]]
        return self.respond(row, LeaderboardMatricesSerializer({**state, "matrix": matrix}).data)


@extend_schema(tags=["leaderboard"])
class ProjectHeadToHead(LeaderboardScoped):
    """Two checkpoints head to head (`first` against `second`, by name): wins, losses, ties and both-bad
    with the Wilson interval of the decisive share, the fit's predicted win probability, how many more
    decisive battles would separate them at 95% if they are not yet separated, the same per prompt
    category, the mean difference on each rubric axis by the same judgment, and a few representative
    judgments of each outcome (with a rationale first)."""

    serializer_class = HeadToHeadSerializer
    query_class = HeadToHeadQuery
    extra_parameters = ("first", "second")

    @extend_schema(responses={200: HeadToHeadSerializer, **LEADERBOARD_RESPONSES})
    def get(self, request: Request, slug: str) -> Response:
        project, row, state = self.state()
        names = (self.query["first"], self.query["second"])
        ids = participant_ids(names)
        data: dict[str, Any] = {
            **state,
            "first": names[0],
            "second": names[1],
            "met": False,
            "overall": None,
            "predicted": None,
            "categories": [],
            "axes": [],
            "examples": [],
        }
        found = head_to_head_report(row.report, ids[names[0]], ids[names[1]]) if row.report else None
        if found is not None:
            labels = {axis["key"]: axis.get("label") or axis["key"] for axis in project.rating_rubric or []}
            counts = (
                "wins",
                "losses",
                "ties",
                "both_bad",
                "shares",
                "decisive_share",
                "decisive_low",
                "decisive_high",
            )
            data.update(
                met=True,
                overall={name: found[name] for name in (*counts, "needed")},
                predicted=found["predicted"],
                categories=[{"category": name, **figures} for name, figures in found["categories"].items()],
                axes=[
                    {"key": key, "label": labels.get(key, key), **figures}
                    for key, figures in found["axes"].items()
                ],
                examples=judgment_examples(
                    project=project,
                    examples=found["examples"],
                    reviewed=bool(row.filters.get("adjudicated_wins", True)),
                ),
            )
        return self.respond(row, HeadToHeadSerializer(data).data)
