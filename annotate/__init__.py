"""The annotator's work loop: assignment engine, browser pages, submission checks, statistics."""
