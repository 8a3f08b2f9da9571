"""Domain vocabulary shared by every layer.

Pure Python (no SQLModel) so that ``handlers`` and ``knowledge``-facing code can use the
names without touching the database. Each member's value is the stable code name used in
JSON, the database and the evaluation interfaces; ``label`` is what users see.
"""

from __future__ import annotations

from enum import Enum


class _Labelled(str, Enum):
    """A string enum whose members carry a Simplified Chinese label."""

    def __new__(cls, value: str, label: str):
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj

    @classmethod
    def parse(cls, value: str):
        """Accept a code name or a Chinese label; raise ``ValueError`` naming the choices."""
        for member in cls:
            if value == member.value or value == member.label:
                return member
        choices = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown {cls.__name__} {value!r}; expected one of: {choices}")


class RiskType(_Labelled):
    """Why a household may fall (back) into poverty (national categories)."""

    ILLNESS = ("illness", "因病")
    DISABILITY = ("disability", "因残")
    EDUCATION = ("education", "因学")
    DISASTER = ("disaster", "因灾")
    ACCIDENT = ("accident", "因意外事故")
    INDUSTRY_FAILURE = ("industry_failure", "因产业失败")
    UNEMPLOYMENT = ("unemployment", "因务工就业不稳")
    LABOR_SHORTAGE = ("labor_shortage", "缺劳动力")
    HOUSING = ("housing", "住房安全")
    WATER = ("water", "饮水安全")
    OTHER = ("other", "其他")


class ProcedureStep(_Labelled):
    """The official order of a case (Shaanxi plan, ch. 3 §2), then what follows the decision."""

    WARNING = ("warning", "风险预警")
    VISIT = ("visit", "入户核查")
    CONSENT = ("consent", "承诺授权")
    DATA_CHECK = ("data_check", "信息比对")
    REVIEW = ("review", "民主评议")
    NOTICE = ("notice", "村级公示")
    TOWNSHIP = ("township", "乡镇审核")
    COUNTY = ("county", "县级审定")
    ASSISTANCE = ("assistance", "帮扶")
    CLOSED = ("closed", "已办结")

    @property
    def index(self) -> int:
        return list(ProcedureStep).index(self)

    def next(self) -> ProcedureStep | None:
        steps = list(ProcedureStep)
        i = steps.index(self)
        return steps[i + 1] if i + 1 < len(steps) else None


#: The eight steps that every case goes through in order before a decision.
DECISION_STEPS: tuple[ProcedureStep, ...] = tuple(list(ProcedureStep)[:8])


class Outcome(_Labelled):
    """The county's decision and what can follow it."""

    MONITORED = ("monitored", "纳入监测（帮扶中）")
    REJECTED = ("rejected", "不予纳入")
    MERGED = ("merged", "合并（重复）")
    RISK_CLEARED = ("risk_cleared", "风险消除")


class MonitoringType(_Labelled):
    UNSTABLE = ("unstable", "脱贫不稳定户")
    MARGINAL = ("marginal", "边缘易致贫户")
    SUDDEN = ("sudden", "突发严重困难户")


class HouseholdCategory(_Labelled):
    LIFTED = ("lifted", "脱贫户")
    MONITORED = ("monitored", "监测户")
    ORDINARY = ("ordinary", "一般农户")


class Channel(_Labelled):
    WECHAT = ("wechat", "公众号自主申报")
    MINIPROGRAM = ("miniprogram", "小程序自主申报")
    STAFF = ("staff", "干部排查")
    DEPARTMENT = ("department", "部门预警")


class RegionLevel(_Labelled):
    PROVINCE = ("province", "省")
    CITY = ("city", "市")
    COUNTY = ("county", "县")
    TOWNSHIP = ("township", "乡镇")
    VILLAGE = ("village", "村")


class Role(_Labelled):
    VILLAGE = ("village", "村级")
    TOWNSHIP = ("township", "乡镇")
    COUNTY = ("county", "县级")
    ADMIN = ("admin", "管理员")


class AssistanceKind(_Labelled):
    MEDICAL = ("medical", "医疗救助")
    EDUCATION = ("education", "教育资助")
    HOUSING = ("housing", "住房补助")
    EMPLOYMENT = ("employment", "就业补贴 / 公益岗位")
    TEMPORARY = ("temporary", "临时救助")
    DIBAO = ("dibao", "低保 / 特困")
    INDUSTRY = ("industry", "产业帮扶")
    MICROCREDIT = ("microcredit", "小额信贷")
    OTHER = ("other", "其他")
