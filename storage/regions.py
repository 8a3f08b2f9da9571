"""The region tree (县 → 乡镇 → 村) and per-region deadline rules."""

from __future__ import annotations

import functools
import re
import time
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from .db import one_of
from .models import DeadlineRule, Region

#: A ``Region.path`` (``/1/4/9/``; ``/`` is the whole tree): digits and slashes only.
PATH_RE = re.compile(r"^/(\d+/)*$")


def create_region(session: Session, *, name: str, level: str, parent: Region | None = None) -> Region:
    """Insert a region under ``parent`` (or return the existing one with that name there)."""
    existing = session.exec(
        select(Region).where(Region.name == name, Region.parent_id == (parent.id if parent else None))
    ).first()
    if existing:
        return existing
    region = Region(name=name, level=level, parent_id=parent.id if parent else None)
    session.add(region)
    session.flush()
    region.path = (parent.path if parent else "/") + f"{region.id}/"
    session.add(region)
    session.flush()
    return region


def get_region(session: Session, region_id: int | None) -> Region | None:
    return session.get(Region, region_id) if region_id is not None else None


def regions_by_ids(session: Session, ids: list[int]) -> list[Region]:
    """The regions of ``ids`` that exist, in the order of ``ids``."""
    if not ids:
        return []
    rows = {r.id: r for r in session.exec(select(Region).where(Region.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows]


def find_region(session: Session, name: str, *, level: str | None = None) -> list[Region]:
    """The regions called ``name`` (of ``level``, when given), in id order."""
    stmt = select(Region).where(Region.name == name)
    if level:
        stmt = stmt.where(Region.level == level)
    return list(session.exec(stmt.order_by(Region.id)))


def find_villages(session: Session, text: str, *, limit: int = 5) -> list[Region]:
    """Villages whose name appears in ``text`` or contains it (for "我是XX村的")."""
    text = text.strip()
    if not text:
        return []
    villages = session.exec(select(Region).where(Region.level == "village")).all()
    hits = [v for v in villages if v.name in text or text in v.name]
    return hits[:limit]


def ancestors(session: Session, region: Region) -> list[Region]:
    """From the root down to ``region`` itself."""
    ids = path_ids(region.path)
    return regions_by_ids(session, ids) if ids else [region]


def region_label(session: Session, region: Region | None) -> str:
    if region is None:
        return ""
    return "".join(r.name for r in ancestors(session, region))


def set_deadline(session: Session, *, step: str, working_days: int, region: Region | None = None) -> DeadlineRule:
    rid = region.id if region else None
    rule = session.exec(
        select(DeadlineRule).where(DeadlineRule.region_id == rid, DeadlineRule.step == step)
    ).first()
    if rule is None:
        rule = DeadlineRule(region_id=rid, step=step, working_days=working_days)
    rule.working_days = working_days
    session.add(rule)
    session.flush()
    _rules_cache.clear()
    return rule


def deadline_days(session: Session, *, step: str, region: Region | None) -> int | None:
    """Working days for ``step``: the nearest rule on the way up from ``region``, else the default."""
    ids = [r.id for r in ancestors(session, region)] if region else []
    rules = session.exec(select(DeadlineRule).where(DeadlineRule.step == step)).all()
    return nearest_rule({r.region_id: r.working_days for r in rules}, ids)


def nearest_rule(rules: dict[int | None, int], chain: list[int]) -> int | None:
    """The working days of the rule nearest to the region on the way up ``chain`` (region ids from
    the root down to the region), else the region-independent rule (``None`` key), else None."""
    for rid in reversed(chain):
        if rid in rules:
            return rules[rid]
    return rules.get(None)


def default_deadline_steps(session: Session) -> set[str]:
    """Steps that already have a region-independent deadline rule."""
    return {r.step for r in session.exec(select(DeadlineRule).where(DeadlineRule.region_id.is_(None)))}


def region_by_names(session: Session, names: list[str]) -> list[Region]:
    """Regions matching a chain of names from any level down (``["白河县", "城关镇"]``)."""
    if not names:
        return []
    candidates = list(session.exec(select(Region).where(Region.name == names[0])))
    for name in names[1:]:
        ids = [c.id for c in candidates]
        candidates = list(session.exec(select(Region).where(Region.name == name, Region.parent_id.in_(ids))))
    return candidates


class Village(NamedTuple):
    id: int
    name: str
    level: str
    path: str


_r, _rule = Region.__table__, DeadlineRule.__table__


@functools.cache
def _villages(dialect: str):
    return sa_select(_r.c.id, _r.c.name, _r.c.level, _r.c.path).where(one_of(_r.c.id, "ids", dialect, Integer()))

_RULES = sa_select(_rule.c.region_id, _rule.c.working_days).where(_rule.c.step == bindparam("step"))


def villages_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Village]:
    """The regions of ``ids`` (checked by the caller to be villages), in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r.id: Village(*r) for r in conn.execute(_villages(conn.dialect.name), {"ids": wanted})}


#: Seconds a process keeps the deadline rules it read (:func:`deadline_rules`): they change when an
#: administrator sets one, and every report reads them. A change made in this process applies at
#: once (:func:`set_deadline`), one made in another worker within this time.
RULES_TTL = 30.0
_rules_cache: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict[int | None, int]]]] = weakref.WeakKeyDictionary()


def deadline_rules(conn: Connection, step: str) -> dict[int | None, int]:
    """``{region id (None: every region): working days}`` of ``step``'s deadline rules."""
    per_step = _rules_cache.setdefault(conn.engine, {})
    cached = per_step.get(step)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    rules = {r.region_id: r.working_days for r in conn.execute(_RULES, {"step": step})}
    per_step[step] = (time.monotonic() + RULES_TTL, rules)
    return rules


def path_ids(path: str) -> list[int]:
    """The region ids of a ``Region.path`` (``/1/4/9/``), from the root down."""
    return [int(x) for x in path.strip("/").split("/") if x]


def region_in_scope(session: Session, region_id: int, region_path: str) -> Region | None:
    stmt = select(Region).where(Region.id == region_id, Region.path.like(region_path + "%"))
    return session.exec(stmt).first()


def villages_under(session: Session, region_path: str) -> list[Region]:
    """Villages in the scope, for the village filter."""
    if not PATH_RE.match(region_path or ""):
        raise ValueError(f"not a region path: {region_path!r}")
    stmt = select(Region).where(Region.level == "village", Region.path.like(region_path + "%")).order_by(Region.path)
    return list(session.exec(stmt))
