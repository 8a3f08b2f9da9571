"""A small demo county for trying the service: regions, households and staff accounts.

The county is 白河县 (Ankang, Shaanxi), one of the documents of the shipped corpus, so policy
questions from demo users prefer its own and the provincial plan. Names, ID numbers and phones
are invented.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from storage import session_scope
from storage.households import create_household
from storage.models import Region
from storage.people import create_staff
from storage.regions import create_region, find_region

from .context import Context
from .setup import install_defaults

TOWNSHIPS = {
    "城关镇": ["龙湾村", "东坝村", "迎春村"],
    "宋家镇": ["双喜村", "肖家坪村"],
}

HOUSEHOLDS = [
    # head, village, id number, phone, category, members, labour capacity
    ("张建国", "龙湾村", "610929196805120018", "13912340001", "lifted", 4, True),
    ("李秀英", "龙湾村", "610929195203150027", "13912340002", "monitored", 2, False),
    ("王大山", "东坝村", "61092919750708003X", "13912340003", "ordinary", 5, True),
    ("赵兰芳", "双喜村", "610929198011020046", "13912340004", "lifted", 3, True),
    ("陈有福", "肖家坪村", "610929196112250051", "13912340005", "ordinary", 1, False),
]


@dataclass
class DemoAccount:
    username: str
    password: str
    role: str
    region: str


@dataclass
class DemoResult:
    created: bool
    accounts: list[DemoAccount] = field(default_factory=list)


def load_demo(ctx: Context) -> DemoResult:
    install_defaults(ctx)
    with session_scope(ctx.engine) as session:
        if find_region(session, "白河县", level="county"):
            return DemoResult(created=False)
        province = create_region(session, name="陕西省", level="province")
        city = create_region(session, name="安康市", level="city", parent=province)
        county = create_region(session, name="白河县", level="county", parent=city)
        villages: dict[str, Region] = {}
        townships: dict[str, Region] = {}
        for tname, vnames in TOWNSHIPS.items():
            town = create_region(session, name=tname, level="township", parent=county)
            townships[tname] = town
            for vname in vnames:
                villages[vname] = create_region(session, name=vname, level="village", parent=town)
        for head, vname, idn, phone, cat, members, labour in HOUSEHOLDS:
            create_household(
                session, ctx.cipher, head_name=head, village_id=villages[vname].id, id_number=idn, phone=phone,
                category=cat, members=members, has_labor_capacity=labour, address=f"{vname}一组",
            )
        plan = [
            ("admin", "admin", county, "系统管理员"),
            ("county", "county", county, "县乡村振兴局 刘科长"),
            ("chengguan", "township", townships["城关镇"], "城关镇 周干事"),
            ("songjia", "township", townships["宋家镇"], "宋家镇 吴干事"),
            ("longwan", "village", villages["龙湾村"], "龙湾村 网格员"),
            ("shuangxi", "village", villages["双喜村"], "双喜村 网格员"),
        ]
        accounts = []
        for username, role, region, name in plan:
            password = secrets.token_urlsafe(9)
            create_staff(session, username=username, password=password, role=role, region_id=region.id,
                         display_name=name)
            accounts.append(DemoAccount(username, password, role, region.name))
    return DemoResult(created=True, accounts=accounts)
