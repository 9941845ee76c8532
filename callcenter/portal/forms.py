"""What the portal's API takes and answers. Personal data go in (name, phone), never out."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# R2.1 kinds a citizen may send on the web (ticketing.open311.OFFERED_KINDS: urgent help needs a call)
WebKind = Literal["consultation", "suggestion", "complaint"]
Rating = Literal["satisfied", "basically_satisfied", "unsatisfied"]
# a mainland mobile number, or a landline with its area code
PHONE_PATTERN = r"^(1[3-9][0-9]{9}|0[1-9][0-9]{1,2}-?[0-9]{7,8})$"
NUMBER_PATTERN = r"^[0-9]{8}-?[0-9]{6}$"
SUFFIX_PATTERN = r"^[0-9]{4}$"
# a photo of policy.portal.photo_max_kb (at most 8 MiB) as base64
PHOTO_MAX_CHARS = (8192 * 1024 * 4) // 3 + 4


class PortalKind(BaseModel):
    code: str
    name: str


class PortalCategory(BaseModel):
    """A category of the city's catalogue a citizen may choose (ticketing.open311.offered_kinds)."""

    code: str
    name: str
    description: str
    keywords: str | None
    unit: str | None
    kinds: list[PortalKind]


class PortalCatalogue(BaseModel):
    """What the form needs: the categories and the largest photo taken (policy.portal)."""

    photo_max_kb: int
    categories: list[PortalCategory]


class PortalRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: WebKind
    category_code: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=5, max_length=4000)
    location: str = Field(min_length=2, max_length=200)
    name: str = Field(min_length=1, max_length=50)
    phone: str = Field(pattern=PHONE_PATTERN, max_length=14)
    photo: str | None = Field(default=None, max_length=PHOTO_MAX_CHARS,
                              description="the photo's bytes as base64 (JPEG, PNG or WebP)")


class PortalReceipt(BaseModel):
    number: str
    notice: str


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(pattern=NUMBER_PATTERN, max_length=15)
    phone_suffix: str = Field(pattern=SUFFIX_PATTERN, max_length=4)


class RatingIn(ProgressIn):
    satisfaction: Rating


class ProgressOut(BaseModel):
    """Where a case is: no name, phone, address or words of the request, only the procedure."""

    number: str
    category: str | None
    status: str
    status_text: str
    accepted_at: datetime
    units: list[str]
    deadline_at: datetime | None
    answer: str | None
    reported_at: datetime | None
    satisfaction: Rating | None
    may_rate: bool


__all__ = ["PHONE_PATTERN", "PortalCatalogue", "PortalCategory", "PortalKind", "PortalReceipt", "PortalRequestIn", "ProgressIn",
           "ProgressOut", "RatingIn"]
