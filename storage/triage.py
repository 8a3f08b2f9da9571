"""Data functions behind the triage procedure: scoped look-ups, case updates, recipients."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import true
from sqlmodel import Session, select

from .models import Case, CaseEvent, Household, Region, WeChatUser, utcnow


def case_in_scope(session: Session, case_id: int, region_path: str, *, for_update: bool = False) -> Case | None:
    """The case if it lies below ``region_path``; None otherwise (whether it exists or not)."""
    stmt = select(Case).where(Case.id == case_id, Case.region_path.like(region_path + "%"))
    if for_update and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def case_by_ref_in_scope(session: Session, ref: str, region_path: str) -> Case | None:
    stmt = select(Case).where(Case.ref == ref.strip().upper(), Case.region_path.like(region_path + "%"))
    return session.exec(stmt).first()


def update_case(session: Session, case: Case, *, now: dt.datetime | None = None, **fields: Any) -> Case:
    for key, value in fields.items():
        if not hasattr(case, key):
            raise AttributeError(key)
        setattr(case, key, value)
    case.updated_at = now or utcnow()
    session.add(case)
    session.flush()
    return case


def households_in_village(session: Session, village_id: int) -> list[Household]:
    return list(session.exec(select(Household).where(Household.village_id == village_id).order_by(Household.id)))


def household_in_scope(session: Session, household_id: int, region_path: str) -> Household | None:
    stmt = (
        select(Household)
        .join(Region, Region.id == Household.village_id)
        .where(Household.id == household_id, Region.path.like(region_path + "%"))
    )
    return session.exec(stmt).first()


def region_in_scope(session: Session, region_id: int, region_path: str) -> Region | None:
    stmt = select(Region).where(Region.id == region_id, Region.path.like(region_path + "%"))
    return session.exec(stmt).first()


def villager_openids(session: Session, case: Case) -> list[str]:
    """Official-account openids to tell the villager about ``case``: the reporter, else the household's."""
    if case.reporter_id is not None:
        user = session.get(WeChatUser, case.reporter_id)
        if user is not None and user.app == "oa" and user.subscribed:
            return [user.openid]
    if case.household_id is not None:
        stmt = (
            select(WeChatUser.openid)
            .where(WeChatUser.household_id == case.household_id, WeChatUser.app == "oa", WeChatUser.subscribed == true())
            .order_by(WeChatUser.id)
        )
        return list(session.exec(stmt))
    return []


def events_with_action(session: Session, case_id: int, action: str) -> list[CaseEvent]:
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == action).order_by(CaseEvent.id)
    return list(session.exec(stmt))


def open_cases_of_household(session: Session, household_id: int, *, exclude_id: int | None = None) -> list[Case]:
    stmt = select(Case).where(Case.household_id == household_id, Case.closed_at.is_(None))
    if exclude_id is not None:
        stmt = stmt.where(Case.id != exclude_id)
    return list(session.exec(stmt.order_by(Case.id)))


def cases_merged_into(session: Session, case_id: int) -> list[Case]:
    return list(session.exec(select(Case).where(Case.merged_into_id == case_id).order_by(Case.id)))

