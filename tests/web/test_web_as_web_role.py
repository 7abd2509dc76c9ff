"""Every test of tests/web/test_web.py again, with the web logged in as a member of `vigil_web`
(VIGIL_WEB_DATABASE_URL), as `make run` and docker-compose run it: logins, pages, the API, reports and audits work
with the least-privilege role, not only as the schema's owner. The tests seed and check with the owner's URL, as
other services would write."""

from __future__ import annotations

import pytest

from devstack.postgres import login_url
from shared.config import Settings
from tests.web.test_web import *  # noqa: F403 - collected here again, under the `settings` below
from tests.web.test_web_limits import web_login  # noqa: F401 - a fixture, used by `settings` below


@pytest.fixture
def settings(settings: Settings, db_url: str, web_login: tuple[str, str]) -> Settings:  # noqa: F811
    return settings.model_copy(update={"web_database_url": login_url(db_url, *web_login)})
