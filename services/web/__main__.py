from services.web.app import build_app
from shared.service import run

run("web", build_app)
