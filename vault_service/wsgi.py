"""WSGI entry point for gunicorn: `gunicorn vault_service.wsgi:app`."""

from . import create_app

app = create_app()
