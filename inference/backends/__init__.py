"""Generation backends. Importing this package never imports torch: `backend_for` imports lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.backends.base import CheckpointSpec, GenerationBackend


def backend_for(spec: CheckpointSpec, *, batch_size: int = 32) -> GenerationBackend:
    """Load the backend a checkpoint names. Slow (weights load here); callers cache the result.
    `batch_size` is how many samples one forward pass takes (requests in flight for the HTTP backend)."""
    if spec.backend == "openai":
        from inference.backends.openai import OpenAICompatibleBackend

        return OpenAICompatibleBackend(spec, concurrency=batch_size)
    from inference.backends.transformers import TransformersBackend

    return TransformersBackend(spec, batch_size=batch_size)
