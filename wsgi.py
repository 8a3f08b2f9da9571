"""WSGI entry point: ``gunicorn wsgi:app`` (``huinong serve`` does this for you)."""

from bot import create_app

app = create_app()
