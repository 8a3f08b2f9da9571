"""Persistence: the only package that imports SQLModel or SQLAlchemy.

Handlers annotate with the re-exported ``Session`` and ``Connection``, catch the re-exported
``IntegrityError`` (a unique constraint refused a write), and call the functions of the modules here.
"""

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .crypto import DataCipher
from .db import init_db, make_engine, session_on, session_scope

__all__ = ["Connection", "IntegrityError", "Session", "DataCipher", "init_db", "make_engine", "session_on",
           "session_scope"]
