"""Vigil ingest service."""

from services.ingest.app import build_app
from shared.service import run

run("ingest", build_app)
