"""Pydantic models of every mini-program request and response: the one source of the API.

``bot.miniprogram.openapi`` builds ``/api/v1/openapi.json`` from their JSON Schemas and the edge
validates every body with the same models, so the document cannot promise what the code refuses,
or the reverse. Request models are strict: nothing is coerced (``"3"`` is not an integer, ``1``
is not a boolean), except that an integral number such as ``3.0`` is an integer, as in JSON
Schema. Patterns use Python's ``re`` (search semantics), as the validator always has.
"""

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from storage.enums import HouseholdCategory, Outcome, ProcedureStep, RiskType

#: WeChat's image picker offers at most 9 photos at a time; a case keeps at most this many.
MAX_PHOTOS_PER_CASE = 9
IDEMPOTENCY_KEY_MAX = 128

#: Free text: any characters except the C0 controls other than tab, newline and carriage return
#: (PostgreSQL refuses NUL, and nobody types the others).
TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$"
#: Free text with at least one visible character (a blank value counts as missing).
VISIBLE_PATTERN = ("^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*[^\\s\\u0000-\\u001f]"
                   "[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$")
IDEMPOTENCY_KEY_PATTERN = f"^[A-Za-z0-9._:-]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
REF_PATTERN = "^[A-Za-z]{2}[0-9]{8}-[0-9]{4,8}$"
INT32_MAX = 2**31 - 1


def _choices(values: list[str | None]) -> Any:
    return Literal[tuple(values)]  # a Literal built from the enums, so the two cannot drift


RISK_VALUES = [r.value for r in RiskType] + [r.label for r in RiskType]
RiskCode = _choices([r.value for r in RiskType])
StepCode = _choices([s.value for s in ProcedureStep])


def Text(max_len: int, min_len: int = 0, **extra: Any) -> Any:
    """Free text up to ``max_len`` characters; ``min_len`` 1 also refuses a blank value."""
    return Annotated[str, StringConstraints(max_length=max_len, min_length=min_len or None,
                                            pattern=VISIBLE_PATTERN if min_len else TEXT_PATTERN),
                     Field(**extra)]


def _integral(value: Any) -> Any:
    """JSON Schema's integer includes ``3.0``; strict validation then refuses everything else."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _only_str(value: Any) -> Any:
    if not isinstance(value, str):  # a wrong type is a type error, not a wrong choice
        raise PydanticKnownError("string_type")
    return value


PositiveId = Annotated[int, Field(ge=1, le=INT32_MAX), BeforeValidator(_integral)]
RiskChoice = Annotated[_choices(RISK_VALUES), BeforeValidator(_only_str)]
#: A datetime as the API writes it: UTC, to the second.
Timestamp = Annotated[dt.datetime, PlainSerializer(
    lambda d: d.astimezone(dt.UTC).isoformat(timespec="seconds"), return_type=str, when_used="json")]


def _absent_is_not_null(schema: dict, cls: type) -> None:
    """An optional field may be left out, which is not the same as sending null."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    if getattr(cls, "ANY_OF", None):
        schema["anyOf"] = [{"required": list(alt)} for alt in cls.ANY_OF]


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", regex_engine="python-re",
                              json_schema_extra=_absent_is_not_null)


# --- requests ------------------------------------------------------------------------------


class LoginRequest(Request):
    code: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern="^[A-Za-z0-9_-]+$")] = Field(
        description="The code from wx.login()")


class BindRequest(Request):
    """Either the household's QR-code token (一户一码), or the head of household's name, the last 6
    characters of the ID number and the village (by id or name)."""

    #: The ways to name a household; the first one the body lacks a field of is the one named.
    ANY_OF: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("token",), ("name", "id_last6", "village_id"), ("name", "id_last6", "village"))

    token: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern="^(hh:)?[A-Za-z0-9_-]+$")] = Field(
        None, description="The bind token, with or without the QR scene prefix hh:")
    name: Text(32, 1) = None
    id_last6: Annotated[str, StringConstraints(pattern="^[0-9]{5}[0-9Xx]$")] = None
    village_id: PositiveId = None
    village: Text(64, 1) = None

    @model_validator(mode="before")
    @classmethod
    def _one_way(cls, data: Any) -> Any:
        # Unknown fields are reported first (by extra="forbid"), as the old order had it.
        if isinstance(data, dict) and set(data) <= set(cls.model_fields):
            if not any(all(k in data for k in alt) for alt in cls.ANY_OF):
                nearest = max(cls.ANY_OF, key=lambda alt: sum(k in data for k in alt))
                missing = next(k for k in nearest if k not in data)
                raise PydanticCustomError("one_way", "token, or name + id_last6 + village", {"field": missing})
        return data


class ReportRequest(Request):
    risk_types: list[RiskChoice] = Field(
        default_factory=list, max_length=len(RiskType),
        description="Risk type codes (or their Chinese labels); empty lets the description decide")
    description: Text(2000, description="What happened, in the villager's words") = ""
    reporter_name: Text(32, description="Required when the user has not bound a household") = None
    reporter_phone: Annotated[str, StringConstraints(pattern="^1[3-9][0-9]{9}$")] = Field(
        None, description="Required when the user has not bound a household")
    village_id: PositiveId = Field(None, description="Required when the user has not bound a household")
    consent: bool = Field(None, description="承诺授权 (consent to checks of income and assets); must be true when unbound")


class ReportMultipart(ReportRequest):
    """What wx.uploadFile sends: the report's text fields in formData plus the photos."""

    photos: list[bytes] = Field(default_factory=list, max_length=MAX_PHOTOS_PER_CASE,
                                description="JPEG, PNG or WebP photos (also accepted under the field name photo)")


class PhotoMultipart(Request):
    photo: bytes = Field(description="One JPEG, PNG or WebP photo")


class AskRequest(Request):
    question: Text(500, 1)
    region: Text(32, description="A place whose documents are preferred, e.g. 白河县; empty = the asker's own "
                                 "county when bound") | None = None
    offset: Annotated[int, Field(ge=0, le=50), BeforeValidator(_integral)] = Field(
        0, description="0, then next_offset for 更多")


class ReportListQuery(Request):
    limit: Annotated[int, Field(ge=1, le=50)] = 20


# --- responses -----------------------------------------------------------------------------


class Household(BaseModel):
    id: int
    head_name: str
    village_id: int
    village: str
    township: str
    county: str
    region: str = Field(description="县乡村, e.g. 白河县城关镇龙湾村")
    group_name: str
    address: str
    category: _choices([c.value for c in HouseholdCategory])
    category_label: str
    members: int
    id_number_masked: str = Field(examples=["610929********0018"])
    phone_masked: str = Field(examples=["139****0001"])


class HouseholdState(BaseModel):
    bound: bool
    household: Household | None


class LoginUser(BaseModel):
    id: int
    bound: bool


class Login(BaseModel):
    token: str = Field(description="Send as Authorization: Bearer <token>")
    token_type: Literal["Bearer"]
    expires_at: Timestamp
    expires_in: int = Field(description="Seconds")
    user: LoginUser
    household: Household | None


class Logout(BaseModel):
    revoked: bool


class Photo(BaseModel):
    id: int
    content_type: Literal["image/jpeg", "image/png", "image/webp", ""] = Field(
        description="Empty (and size 0) for a photo sent in the WeChat chat, kept by its media id")
    size: int
    created_at: Timestamp


class Receipt(BaseModel):
    ref: str = Field(examples=["SB20261122-0007"])
    urgent: bool = Field(description="绿色通道: staff are notified at once")
    due_at: Timestamp | None
    risk_types: list[RiskCode]
    missing: list[Literal["risk_types", "description"]] = Field(
        description="What the form may still ask for (optional)")
    message: str
    photos: list[Photo]


class ReportItem(BaseModel):
    ref: str
    created_at: Timestamp
    step: StepCode
    step_label: str
    status: str = Field(description="Plain words for the villager")
    due_at: Timestamp | None
    overdue: bool
    outcome: _choices([o.value for o in Outcome]) | None


class ReportList(BaseModel):
    items: list[ReportItem]


class RiskLabel(BaseModel):
    code: str
    label: str | None


class TimelineEntry(BaseModel):
    at: Timestamp
    action: str
    step: str | None
    step_label: str | None


class ReportDetail(BaseModel):
    ref: str
    created_at: Timestamp
    channel: str
    step: StepCode
    step_label: str
    status: str
    due_at: Timestamp | None
    overdue: bool
    outcome: str | None
    outcome_label: str | None
    urgent: bool
    risk_types: list[RiskLabel]
    description: str
    photos: list[Photo]
    timeline: list[TimelineEntry]


class Passage(BaseModel):
    doc: str = Field(description="Corpus file name")
    title: str
    issuer: str
    date: str
    doc_no: str | None
    section: str = Field(description="Section path, e.g. 第三章 第一节 （二）")
    text: str = Field(description="The clause, word for word: original[start:end] of the file doc")
    start: int = Field(description="Character offset in the original file")
    end: int
    score: float
    region: dict[str, str | None] = Field(description="The document's region: province, city, county")
    display: str = Field(description="Repaired reading text (a table row with its header)")


class Answer(BaseModel):
    text: str = Field(description="WeChat-ready answer with the citation")
    answerable: bool = Field(description="False: the documents do not answer this")
    region: str | None
    passages: list[Passage]
    next_offset: int | None


class Topic(BaseModel):
    code: str
    title: str
    description: str
    examples: list[str]


class Topics(BaseModel):
    topics: list[Topic]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable, for programs")
    message: str = Field(description="Chinese, for the villager")
    field: str | None = Field(description="The offending field or header")


class Error(BaseModel):
    """Every error of the API (``bot.errors``)."""

    model_config = ConfigDict(extra="forbid")

    ok: Literal[False]
    error: ErrorDetail


#: Component schemas of the document: every model an operation names (nested ones follow).
RESPONSES = (Error, HouseholdState, Login, Logout, Photo, Receipt, ReportList, ReportDetail, Answer, Topics)
REQUESTS = (LoginRequest, BindRequest, ReportRequest, ReportMultipart, PhotoMultipart, AskRequest)
