"""Vigil correlator service."""
