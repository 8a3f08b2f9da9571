"""Administrative use cases: default deadlines, staff accounts."""

from __future__ import annotations

from storage import session_scope
from storage.enums import Role
from storage.models import Region, StaffUser
from storage.people import create_staff, staff_by_username
from storage.regions import default_deadline_steps, region_by_names, set_deadline

from .context import Context
from .deadlines import DEFAULT_STEP_DAYS
from .errors import Conflict, ValidationError


def install_defaults(ctx: Context) -> None:
    """Default deadline rules (region-independent); existing rules are left as they are."""
    with session_scope(ctx.engine) as session:
        have = default_deadline_steps(session)
        for step, days in DEFAULT_STEP_DAYS.items():
            if step not in have:
                set_deadline(session, step=step, working_days=days)


def resolve_region(session, spec: str) -> Region:
    """A region by id, or by names from any level down separated by '/': 白河县/城关镇/龙湾村."""
    spec = spec.strip()
    if spec.isdigit():
        region = session.get(Region, int(spec))
        if region is None:
            raise ValidationError(f"没有编号为 {spec} 的区域", field="region")
        return region
    names = [n for n in spec.split("/") if n]
    if not names:
        raise ValidationError("请指定区域", field="region")
    candidates = region_by_names(session, names)
    if len(candidates) != 1:
        raise ValidationError(f"区域“{spec}”不存在或不唯一", field="region")
    return candidates[0]


def create_staff_account(
    ctx: Context, *, username: str, password: str, role: str, region: str, display_name: str = ""
) -> StaffUser:
    try:
        role = Role.parse(role).value
    except ValueError as exc:
        raise ValidationError("角色不正确", field="role") from exc
    with session_scope(ctx.engine) as session:
        if staff_by_username(session, username):
            raise Conflict(f"用户名 {username} 已存在", field="username")
        node = resolve_region(session, region)
        return create_staff(
            session, username=username, password=password, role=role, region_id=node.id, display_name=display_name
        )
