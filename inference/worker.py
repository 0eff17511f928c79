"""The model a worker process holds: loaded on first use, kept across tasks, swapped when asked for
another checkpoint. One worker process per GPU holds one model at a time.

Nothing here runs at import: the Celery parent process (which may fork pool children) never touches torch;
the first task that needs a model loads it in the process that runs the task.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from inference.backends import backend_for
from inference.backends.base import CheckpointSpec, GenerationBackend

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: GenerationBackend | None = None


def loaded_backend(spec: CheckpointSpec) -> GenerationBackend:
    """The backend for `spec`, reusing the loaded one when the spec is unchanged (same checkpoint, same
    settings); otherwise the old model is freed before the new one loads, so two never share the GPU."""
    global _loaded
    with _lock:
        if _loaded is not None and _loaded.spec == spec:
            return _loaded
        if _loaded is not None:
            logger.info("Unloading checkpoint %s", _loaded.spec.name)
            _loaded.close()
            _loaded = None
        logger.info("Loading checkpoint %s", spec.name)
        _loaded = backend_for(spec, batch_size=settings.RANKWISE_GENERATION_BATCH_SIZE)
        return _loaded


def unload() -> None:
    global _loaded
    with _lock:
        if _loaded is not None:
            _loaded.close()
            _loaded = None
