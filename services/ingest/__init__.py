"""Vigil ingest service."""
