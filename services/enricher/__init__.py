"""Vigil enricher service."""
