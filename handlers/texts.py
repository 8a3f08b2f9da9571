"""Every user-visible Chinese string of the use cases, in one place."""

from __future__ import annotations

from storage.enums import RiskType

#: What a villager is told about each step, in plain words.
STEP_STATUS = {
    "warning": "已收到您的申报，村干部将尽快上门了解情况",
    "visit": "村干部正在入户核查",
    "consent": "请配合签署承诺授权书（同意核查家庭收入和财产）",
    "data_check": "正在比对家庭收入、财产等信息",
    "review": "村里正在进行民主评议",
    "notice": "评议结果正在村里公示",
    "township": "乡镇正在审核",
    "county": "县里正在审定",
    "assistance": "已纳入监测，正在落实帮扶措施",
    "closed": "已办结",
}

OUTCOME_STATUS = {
    "monitored": "已纳入监测对象，帮扶措施正在落实",
    "rejected": "经审核未纳入监测",
    "merged": "与您的另一条申报合并办理",
    "risk_cleared": "风险已消除，感谢配合",
}

#: Numbered choices offered after a one-click report (the order is the menu shown to villagers).
RISK_CHOICES: tuple[RiskType, ...] = (
    RiskType.ILLNESS,
    RiskType.DISABILITY,
    RiskType.EDUCATION,
    RiskType.DISASTER,
    RiskType.ACCIDENT,
    RiskType.INDUSTRY_FAILURE,
    RiskType.UNEMPLOYMENT,
    RiskType.LABOR_SHORTAGE,
    RiskType.HOUSING,
    RiskType.WATER,
    RiskType.OTHER,
)

_PLAIN_RISK = {
    "illness": "生病、住院",
    "disability": "残疾",
    "education": "上学费用",
    "disaster": "自然灾害",
    "accident": "意外事故",
    "industry_failure": "种养殖或生意失败",
    "unemployment": "没活干、失业",
    "labor_shortage": "家里缺劳动力",
    "housing": "住房不安全",
    "water": "吃水困难",
    "other": "其他困难",
}


def risk_menu() -> str:
    lines = [f"{i}. {r.label}（{_PLAIN_RISK[r.value]}）" for i, r in enumerate(RISK_CHOICES, 1)]
    return "\n".join(lines)


ASK_RISK = "请回复数字选择困难类型（可多选，如“1 4”）：\n{menu}\n不选也可以，直接回复文字说明情况。"
ASK_DESCRIPTION = "请用几句话说说家里的情况（也可以发语音或照片）。回复“好了”结束。"
ACK_REPORT = "已收到您的申报，编号 {ref}。村干部会在 {due} 前联系您。"
ACK_REPORT_URGENT = "已收到您的紧急申报，编号 {ref}，已走绿色通道，工作人员会尽快联系您。"
ACK_DUPLICATE = "这条申报已经收到过了，编号 {ref}。"
NO_CASES = "您还没有申报记录。遇到困难请点菜单“一键申报”。"
PROGRESS_HEAD = "您的申报进度："
PROGRESS_LINE = "{ref}（{date}）：{status}{due}"
PROGRESS_DUE = "，办理时限 {due}"
PROGRESS_OVERDUE = "，已超过时限，已提醒工作人员"


def format_date(d) -> str:
    return f"{d.month}月{d.day}日"
