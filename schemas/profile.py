"""Public shapes of a customer's live knowledge, as the API returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.records import Contribution


class CategoryWeight(BaseModel):
    category: str
    weight: float = Field(description="Share of the customer's recent interest (decayed), 0-1.")


class CustomerFeatures(BaseModel):
    """Live features, names as in DESIGN.md; timestamps are event time."""

    orders: int = 0
    revenue: float = 0.0
    avg_order_value: float = 0.0
    items_bought: int = 0
    views: int = 0
    product_views: int = 0
    cart_adds: int = 0
    cart_removes: int = 0
    checkouts_started: int = 0
    sessions: int = 0
    active_days: int = Field(0, description="Distinct days (UTC) with any activity.")
    searches: int = 0
    tickets_total: int = 0
    open_tickets: int = 0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    last_order_at: datetime | None = None
    category_affinity: list[CategoryWeight] = Field(default_factory=list)
    recent_products: list[str] = Field(default_factory=list)


class ScoreStatus(BaseModel):
    """Whether a model's score is served yet. A model that has not learnt enough resolved
    labels answers ``warming_up`` and a ``null`` score instead of a guess."""

    status: Literal["ready", "warming_up"]
    examples: int = Field(description="Resolved labels the model had learnt when it scored.")
    needed: int = Field(description="Resolved labels it needs before its scores are served.")
    pending: int = Field(description="Labels still waiting for their horizon to pass.")


class CustomerScores(BaseModel):
    """Model outputs for one customer; absent until the models have seen the customer."""

    churn_probability: float | None = None
    churn_status: ScoreStatus | None = None
    segment: int | None = None
    segment_label: str | None = None
    clv: float | None = Field(None, description="Expected spend in the CLV window.")
    clv_status: ScoreStatus | None = None
    sentiment: float | None = None
    anomaly_score: float | None = None
    scored_at: datetime | None = Field(
        None, description="Event time (the worker's watermark) at which churn and CLV were "
        "computed: silence up to this moment is in them.")


class CustomerProfile(BaseModel):
    customer_id: str
    tenant: str
    features: CustomerFeatures
    scores: CustomerScores = Field(default_factory=CustomerScores)
    churn_explanation: list[Contribution] = Field(default_factory=list)
    model_version: str | None = None
    updated_at: datetime | None = None


class Recommendation(BaseModel):
    product_id: str
    score: float
    source: str = Field(
        description="collaborative, bought_together, recently_viewed or trending")


class Ticket(BaseModel):
    """A support ticket as triaged: its latest status, and what its latest text is about."""

    ticket_id: str
    customer_id: str
    status: str = Field(description="opened, replied, resolved or reopened: the latest by "
                                    "event time (unknown: only its triage is known).")
    channel: str | None = None
    subject: str | None = None
    category: str | None = Field(None, description="billing, delivery, product, account or "
                                                   "other.")
    category_probability: float | None = None
    category_source: str | None = Field(None, description="keywords, blend or model: who "
                                                          "decided the category.")
    urgency: float | None = Field(None, description="0-1, from the text's wording and tone.")
    sentiment: float | None = Field(None, description="-1 (angry) to 1 (happy).")
    updated_at: datetime | None = Field(None, description="Event time of its latest event.")
