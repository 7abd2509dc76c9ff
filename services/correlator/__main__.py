from services.correlator.app import build_app
from shared.service import run

run("correlator", build_app)
