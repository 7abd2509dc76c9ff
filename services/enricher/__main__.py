from services.enricher.app import build_app
from shared.service import run

run("enricher", build_app, background=True)
