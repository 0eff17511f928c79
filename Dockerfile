# syntax=docker/dockerfile:1
#
# Rankwise images. Two targets:
#   web (default)  gunicorn; the same image runs `migrate` and the Celery worker for the `default` queue.
#                  No torch in it.
#   gpu            web plus the `inference` extra (torch, transformers, safetensors, peft), for the
#                  Celery workers that consume the `generation` queue.
#
#   docker build -t rankwise:web .
#   docker build --target gpu -t rankwise:gpu .
#
# docker-compose.yml builds both and wires them to PostgreSQL and Redis.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- deps: interpreter, non-root user and the runtime dependencies ---------------------------------
# Only pyproject.toml is copied here, so this layer is rebuilt when the dependencies change, not on
# every code edit.
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles
# The app user, and the exports volume's mount point owned by it (a fresh named volume inherits that).
RUN groupadd --system --gid 10001 rankwise \
 && useradd --system --uid 10001 --gid rankwise --create-home --home-dir /home/rankwise \
            --shell /usr/sbin/nologin rankwise \
 && install -d -o rankwise -g rankwise /var/lib/rankwise/exports
WORKDIR /app
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# ---- base: the project installed, static files collected --------------------------------------------
# The code stays owned by root and read-only to the service user.
FROM deps AS base
COPY . .
RUN pip install . \
 && rm -rf build ./*.egg-info
# Production settings refuse the demo secret and an empty DJANGO_ALLOWED_HOSTS. collectstatic gets
# throwaway values on this one line only: none of them is left in the image's environment.
RUN DJANGO_DEBUG=0 \
    DJANGO_SECRET_KEY=collectstatic-only-Zq8vN3xKp4Lw7Rt2Ys9Jc6Hb1Mf5Dg0Ua3Ek8Wn4Po7Qi2Tx \
    DJANGO_ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput
USER rankwise

# ---- gpu-deps: the inference extra (CUDA torch from the default index) --------------------------------
# Built from `deps`, not `base`, so the multi-GB torch layer is cached across code edits.
FROM deps AS gpu-deps
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['inference']))" \
        > /tmp/requirements-inference.txt \
 && pip install -r /tmp/requirements-inference.txt \
 && rm /tmp/requirements-inference.txt

# ---- gpu: base + the inference extra; Celery worker for the `generation` queue ------------------------
FROM gpu-deps AS gpu
COPY --from=base /app /app
# Every requirement is already satisfied: this installs the project itself with the extra.
RUN pip install ".[inference]" \
 && rm -rf build ./*.egg-info
USER rankwise
CMD ["celery", "-A", "feedback.celery:app", "worker", "--queues", "generation", "--pool", "solo", "--prefetch-multiplier", "1", "--loglevel", "INFO"]

# ---- web: gunicorn (also runs `migrate` and the `default` Celery worker). Last, so it is the default ---
FROM base AS web
EXPOSE 8000
CMD ["gunicorn", "feedback.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60", "--access-logfile", "-"]
