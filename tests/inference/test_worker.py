"""A worker process keeps one model loaded across tasks and swaps it only when the checkpoint changes."""

from dataclasses import replace

import pytest

from inference import worker
from inference.backends.base import CheckpointSpec
from inference.tiny import build_tiny_checkpoint


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker")
    first = build_tiny_checkpoint(root / "first", kind="instruct", seed=1)
    second = build_tiny_checkpoint(root / "second", kind="instruct", seed=2)
    return (
        CheckpointSpec(
            checkpoint_id=1, name="first", kind="instruct", source_type="local", source=str(first)
        ),
        CheckpointSpec(
            checkpoint_id=2, name="second", kind="instruct", source_type="local", source=str(second)
        ),
    )


@pytest.fixture(autouse=True)
def _unload():
    worker.unload()
    yield
    worker.unload()


def test_the_same_checkpoint_is_reused_and_another_replaces_it(specs, settings):
    settings.RANKWISE_GENERATION_BATCH_SIZE = 4
    first, second = specs
    loaded = worker.loaded_backend(first)
    assert loaded.batch_size == 4
    assert worker.loaded_backend(replace(first)) is loaded  # an equal spec: the model stays

    swapped = worker.loaded_backend(second)
    assert swapped is not loaded
    assert swapped.spec == second
    assert loaded.model is None  # the old model was freed before the new one loaded


def test_an_edited_checkpoint_is_reloaded(specs):
    first, _ = specs
    loaded = worker.loaded_backend(first)
    edited = replace(first, dtype="float32")
    assert worker.loaded_backend(edited) is not loaded
