"""Vigil reporter service."""
