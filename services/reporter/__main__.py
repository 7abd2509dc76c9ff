from services.reporter.app import build_app
from shared.service import run

run("reporter", build_app, background=True)
