"""The outbox relay while the database is down: one warning line, no traceback, nothing sent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.settings import load_settings
from services.suite import create_worker_app
from services.tasks import relay_outbox

from support.env import base_env
from support.servers import free_port


def test_the_relay_skips_a_run_with_one_warning_while_the_database_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nobody_listens = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    app = create_worker_app(load_settings(base_env(tmp_path, DATABASE_URL=nobody_listens)))
    with app.app_context(), caplog.at_level(logging.WARNING, logger="services.tasks"):
        answer = relay_outbox.run("consult")
    assert answer == {"sent": 0, "failed": 0, "pending": -1}
    warnings = [record for record in caplog.records if record.name == "services.tasks"]
    assert len(warnings) == 1
    assert "outbox relay of consult skipped: database unavailable" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
