"""Preference datasets out of judgments: options, the streaming source, rows per format, writers.

The write paths that record exports are `feedback.services.exports`; this package only reads.
"""
