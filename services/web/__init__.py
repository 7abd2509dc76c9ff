"""Vigil web service."""
