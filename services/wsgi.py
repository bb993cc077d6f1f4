"""WSGI entry point for gunicorn: ``services.wsgi:app``.

``GONGKAI_SERVICE`` picks what this process serves: ``suite`` (everything, the
single-machine default) or one of ``portal``, ``identity``, ``interpret``,
``consult``, ``search``, ``press`` (one gunicorn per service in production).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from services.settings import WEB_APPS, ConfigError, load_settings


def create_wsgi_app(service: str | None = None) -> Any:
    service = service or os.environ.get("GONGKAI_SERVICE", "suite")
    try:
        settings = load_settings()
    except ConfigError as error:
        # One readable line in the server log instead of a traceback.
        print(f"configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    if service == "suite":
        from services.suite import create_suite

        return create_suite(settings)
    if service not in WEB_APPS:
        raise SystemExit(f"GONGKAI_SERVICE: expected suite or one of {', '.join(WEB_APPS)}, got {service!r}")
    if service == "portal":
        from services.portal import create_app as create_portal

        return create_portal(settings)
    from services.suite import create_app_for

    return create_app_for(service, settings)


def __getattr__(name: str) -> Any:
    # gunicorn imports ``app``; building it on first access keeps imports free of side effects.
    if name == "app":
        return create_wsgi_app()
    raise AttributeError(name)
