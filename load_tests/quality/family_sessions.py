"""A customer's events: sessions of clicks that may end in an order, and support tickets.

A session opens with a landing page, may search, views products (80% in the favourite
category; there, 60% of views are favourite products, the rest follow popularity), adds some
viewed products to the cart (favourite-category ones three times as likely, and those whose
price suits the customer's budget), may remove one, and checks out with the customer's
cart-to-order probability. The order's quantities aim at the customer's basket value, so
spend per order is planted, not a side effect of prices.

About 15% of sessions after the first start anonymous (the browser's cookie id only) and
log in a few clicks later with an event carrying both ids; from then on the customer id.

Tickets arrive at the customer's ticket rate, go opened -> (replied) -> resolved, and carry
the customer's text on every status. A ticket's planted sentiment decides both its wording
and its CSAT; churners write more negative tickets. A churner's ticket must be resolved
before they stop, or it is not opened at all, so nothing of theirs follows the stop.

Events are ``(occurred_at_ms, body)`` pairs; the caller sorts them and adds ``event_id`` and
``occurred_at``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from load_tests.quality.family_catalogue import Catalogue, Product
from load_tests.quality.family_customers import (
    DAY_MS,
    HOUR_MS,
    WEEK_MS,
    CustomerPlan,
    budget_fit,
)
from load_tests.quality.family_texts import write_ticket

__all__ = ["CustomerActivity", "IdCounter", "OrderRecord", "simulate_customer"]

FAVOURITE_CATEGORY_SHARE = 0.8
FAVOURITE_PRODUCT_SHARE = 0.6
ANONYMOUS_SESSION_SHARE = 0.15
REMOVE_FROM_CART_RATE = 0.12
CHANNELS = ("email", "chat", "phone", "web_form")

RawEvent = tuple[int, dict[str, Any]]


@dataclass
class IdCounter:
    """Session, order and ticket ids, numbered in generation order (which is deterministic)."""

    family: str
    seed: int
    sessions: int = 0
    orders: int = 0
    tickets: int = 0

    def session_id(self) -> str:
        self.sessions += 1
        return f"s-{self.family}-{self.seed}-{self.sessions}"

    def order_number(self) -> int:
        self.orders += 1
        return 100_000 + self.orders

    def order_id(self, number: int) -> str:
        return f"o-{self.family}-{self.seed}-{number}"

    def ticket_id(self) -> str:
        self.tickets += 1
        return f"t-{self.family}-{self.seed}-{self.tickets}"


@dataclass(frozen=True)
class OrderRecord:
    """An order as a later ticket may mention it: when, its number, a product and the total."""

    at_ms: int
    number: int
    product: Product
    total: float


@dataclass
class CustomerActivity:
    events: list[RawEvent] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    #: ticket_id -> planted sentiment (+1, 0, -1).
    tickets: dict[str, int] = field(default_factory=dict)


def _poisson(rng: random.Random, mean: float) -> int:
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class _Session:
    """Writes one session's clicks, advancing its own clock a few seconds per click."""

    def __init__(self, *, plan: CustomerPlan, session_id: str, tenant: str, at_ms: int,
                 anonymous: bool) -> None:
        self.plan, self.session_id, self.tenant = plan, session_id, tenant
        self.clock = at_ms
        self.anonymous = anonymous
        self.events: list[RawEvent] = []

    def emit(self, event_type: str, payload: dict[str, Any], rng: random.Random,
             *, login: bool = False) -> None:
        body: dict[str, Any] = {"type": event_type}
        if not self.anonymous or login:
            body["customer_id"] = self.plan.customer_id
        if self.anonymous:
            body["anonymous_id"] = self.plan.device_id
        body["session_id"] = self.session_id
        body["tenant"] = self.tenant
        body.update(payload)
        self.events.append((self.clock, body))
        if login:
            self.anonymous = False
        self.clock += int(min(600.0, max(4.0, rng.expovariate(1 / 45))) * 1000)

    def click(self, kind: str, rng: random.Random, product: Product | None = None,
              **extra: Any) -> None:
        payload: dict[str, Any] = {"kind": kind}
        if product is not None:
            payload["product_id"] = product.product_id
            payload["category"] = product.category
        payload.update(extra)
        self.emit("click", payload, rng)


def _viewed_product(plan: CustomerPlan, catalogue: Catalogue, rng: random.Random) -> Product:
    if rng.random() >= FAVOURITE_CATEGORY_SHARE:
        return catalogue.popular_in(catalogue.other_category(plan.favourite_category, rng), rng)
    if rng.random() < FAVOURITE_PRODUCT_SHARE:
        # Earlier favourites are the stronger ones.
        weights = [1 / math.sqrt(i + 1) for i in range(len(plan.favourites))]
        return rng.choices(plan.favourites, weights=weights)[0]
    return catalogue.popular_in(plan.favourite_category, rng)


def _cart_weight(plan: CustomerPlan, product: Product, line_budget: float) -> float:
    """Favourite-category products are likelier carted, and so are those that suit the
    customer's budget per line (a big spender leaves the trinkets, a small basket the laptop)."""
    favourite = 3.0 if product.category == plan.favourite_category else 1.0
    return favourite * budget_fit(product.price, line_budget)


def _order_lines(plan: CustomerPlan, cart: list[Product],
                 rng: random.Random) -> list[dict[str, Any]]:
    """Quantities that bring the order near a draw around the customer's basket value."""
    target = plan.basket_value * math.exp(rng.gauss(-0.045, 0.3))
    lines = []
    for product in cart:
        unit_price = round(product.price * 0.9, 2) if rng.random() < 0.15 else product.price
        quantity = min(12, max(1, round(target / len(cart) / unit_price)))
        lines.append({"product_id": product.product_id, "quantity": quantity,
                      "unit_price": unit_price, "category": product.category})
    return lines


def _session(plan: CustomerPlan, catalogue: Catalogue, rng: random.Random, ids: IdCounter, *,
             at_ms: int, first: bool, tenant: str,
             currency: str) -> tuple[list[RawEvent], OrderRecord | None]:
    anonymous = not first and rng.random() < ANONYMOUS_SESSION_SHARE
    session = _Session(plan=plan, session_id=ids.session_id(), tenant=tenant, at_ms=at_ms,
                       anonymous=anonymous)
    landing: dict[str, Any] = {"url": "/"}
    if first:
        landing["marketing_consent"] = plan.marketing_consent
    session.click("page_view", rng, **landing)
    g = plan.spec
    views = [_viewed_product(plan, catalogue, rng)
             for _ in range(max(1, _poisson(rng, plan.views_per_session)))]
    carted: set[int] = set()
    if rng.random() < plan.cart_rate:
        lines = min(len(views), 1 + _poisson(rng, g.basket_lines - 1))
        line_budget = plan.basket_value / g.basket_lines
        weights = [_cart_weight(plan, p, line_budget) for p in views]
        # Draws with replacement: a short session with one suitable product carts just that.
        carted.update(rng.choices(range(len(views)), weights=weights, k=lines))
    login_at = rng.randint(0, min(2, len(views))) if anonymous else -1
    if rng.random() < g.search_rate:
        category = plan.favourite_category if rng.random() < 0.7 else views[0].category
        query = rng.choice(catalogue.nouns[category])
        session.click("search", rng, query=query, category=category)
    cart: list[Product] = []
    for i, product in enumerate(views):
        if i == login_at:
            session.emit("click", {"kind": "page_view", "url": "/login"}, rng, login=True)
        if i > 0 and product.category != views[i - 1].category and rng.random() < 0.3:
            session.click("page_view", rng, url=f"/c/{product.category}")
        session.click("product_view", rng, product)
        if i in carted and product not in cart:
            session.click("add_to_cart", rng, product)
            cart.append(product)
    if login_at == len(views):
        session.emit("click", {"kind": "page_view", "url": "/login"}, rng, login=True)
    if len(cart) > 1 and rng.random() < REMOVE_FROM_CART_RATE:
        session.click("remove_from_cart", rng, cart.pop(rng.randrange(len(cart))))
    if not cart or rng.random() >= plan.order_rate:
        return session.events, None
    session.click("page_view", rng, url="/cart")
    session.click("checkout_start", rng)
    number = ids.order_number()
    items = _order_lines(plan, cart, rng)
    total = round(sum(line["quantity"] * line["unit_price"] for line in items), 2)
    session.emit("purchase", {"order_id": ids.order_id(number), "items": items,
                              "total": total, "currency": currency}, rng)
    return session.events, OrderRecord(session.events[-1][0], number, cart[0], total)


def _ticket_sentiment(plan: CustomerPlan, rng: random.Random) -> int:
    negative, positive = (0.6, 0.2) if plan.churned else (0.35, 0.35)
    draw = rng.random()
    return -1 if draw < negative else 1 if draw < negative + positive else 0


def _csat(sentiment: int, rng: random.Random) -> int:
    if sentiment == 0:
        return 3
    strong = rng.random() < 0.6
    return (1 if strong else 2) if sentiment < 0 else (5 if strong else 4)


def _tickets(plan: CustomerPlan, orders: list[OrderRecord], rng: random.Random,
             ids: IdCounter, *, end_ms: int, tenant: str, activity: CustomerActivity) -> None:
    limit = plan.stop_ms if plan.stop_ms is not None else end_ms
    at_ms = plan.joined_ms
    while True:
        at_ms += int(rng.expovariate(plan.ticket_rate / WEEK_MS)) + 1
        if at_ms >= limit:
            return
        steps = [("opened", at_ms)]
        if rng.random() < 0.75:
            steps.append(("replied", steps[-1][1] + int(rng.uniform(0.5, 30) * HOUR_MS)))
        steps.append(("resolved", steps[-1][1] + int(rng.uniform(1, 96) * HOUR_MS)))
        if plan.stop_ms is not None and steps[-1][1] >= plan.stop_ms:
            continue
        recent = [o for o in orders if at_ms - 45 * DAY_MS <= o.at_ms < at_ms]
        product = recent[-1].product if recent else rng.choice(plan.favourites)
        sentiment = _ticket_sentiment(plan, rng)
        subject, text = write_ticket(sentiment, rng, product=product.name,
                                     category=product.category,
                                     order_number=recent[-1].number if recent else None)
        ticket_id, channel, csat = ids.ticket_id(), rng.choice(CHANNELS), _csat(sentiment, rng)
        activity.tickets[ticket_id] = sentiment
        for status, step_ms in steps:
            if step_ms >= end_ms:
                break
            body: dict[str, Any] = {"type": "ticket", "customer_id": plan.customer_id,
                                    "tenant": tenant, "ticket_id": ticket_id,
                                    "status": status, "channel": channel,
                                    "subject": subject, "body": text}
            if status == "resolved":
                body["csat"] = csat
            activity.events.append((step_ms, body))


def simulate_customer(plan: CustomerPlan, visits: list[int], catalogue: Catalogue,
                      rng: random.Random, ids: IdCounter, *, end_ms: int, tenant: str,
                      currency: str) -> CustomerActivity:
    """Every event of one customer (unsorted), with their orders and tickets' sentiment."""
    activity = CustomerActivity()
    for n, at_ms in enumerate(visits):
        events, order = _session(plan, catalogue, rng, ids, at_ms=at_ms, first=n == 0,
                                 tenant=tenant, currency=currency)
        activity.events.extend(e for e in events if e[0] < end_ms)
        if order is not None and order.at_ms < end_ms:
            activity.orders.append(order)
    _tickets(plan, activity.orders, rng, ids, end_ms=end_ms, tenant=tenant, activity=activity)
    return activity
