"""The REST API under /api/v1/: what data engineers' scripts read and write.

Who may do what:
- Data engineers (the "data engineers" group) and admins (staff) use every endpoint, reads and writes:
  importing prompts, starting generation runs and creating exports are the steps a data pipeline takes
  between training runs, so a data engineer's token may take them. Annotators get 403 everywhere here
  (they work through the annotation pages); requests without credentials get 401.
- Dataset readers see every project: datasets are built across projects, and membership of a project
  is an annotator's notion. The scoping still goes through `feedback.api.selectors`, so a view never
  looks a client-supplied id up in an unscoped queryset.
- The review endpoints (projects/<slug>/review-queue, …/review-items/<id>/decision) also admit the
  project's own reviewers and managers, on that project only (`ReadsReviewQueue`); deciding needs that
  role or staff (the service checks), so data engineers read the queue without deciding it.
- The OpenAPI schema (/api/schema/) and its Swagger UI page (/api/docs/) are open to anyone: they
  describe shapes, never data.

How:
- Authentication: `Authorization: Bearer <token>` (or `Token <token>`) with a token from the admin or
  `manage.py create_api_token`; or the browser session, with CSRF enforced on writes.
- Token requests are rate limited per token (`RANKWISE_API_TOKEN_RATE`, 429 with Retry-After).
- Every error is `{"detail": "…", "errors": {"<field>": ["…"]}}` (`errors` only where fields are at
  fault), the shape the annotation endpoints answer with.
- Query parameters are allowlisted per endpoint: an unknown or repeated one is a 400 naming it, and
  values are validated before any query runs. Lists are cursor-paginated (`cursor`, `page_size`).
"""
