"""Persistence: the only package that imports SQLModel or SQLAlchemy.

Handlers annotate with the re-exported ``Session`` and call the functions of the modules here.
"""

from sqlmodel import Session

from .crypto import DataCipher
from .db import init_db, make_engine, session_scope

__all__ = ["Session", "DataCipher", "init_db", "make_engine", "session_scope"]
