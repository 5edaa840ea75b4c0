"""How one simulated customer behaves in one session, and the life of a support ticket.

:class:`SessionWriter` turns a customer's next session into timed event dicts on a shared
heap (ordered by event time, ties by creation order) and schedules the customer's next
session. A heap entry holds a customer whose next session starts then, or a *run*: the
remaining timed events of one session or ticket, latest first, so the consumer can emit a
whole session without a heap operation per event while nobody else is active. Events at or
after the customer's churn date or the end of the period are never written: a churner simply
stops. Everything is drawn from one ``random.Random`` so a seed replays the same shop.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from bisect import bisect_right as bisect
from typing import Any

from simulator.catalogue import Catalogue
from simulator.population import DAY_MS, HOUR_MS, Customer
from simulator.texts import CHANNELS, follow_up_text, reopen_text, search_query, ticket_text

#: The category a help desk files each simulated topic under (the resolving agent's label).
_CATEGORY_OF_TOPIC = {"delivery": "delivery", "damaged": "product", "refund": "billing",
                      "question": "other", "account": "account"}

#: Activity fades during this window before a churner's churn date.
DECLINE_MS = 30 * DAY_MS
MIN_GAP_MS = HOUR_MS // 2
_PAGES = ("/", "/deals", "/account", "/help", "/new")
_CSAT = {
    "happy": ((5, 4, 3), (0.6, 0.35, 0.05)),
    "neutral": ((5, 4, 3, 2), (0.15, 0.4, 0.35, 0.1)),
    "angry": ((1, 2, 3), (0.6, 0.3, 0.1)),
}
_P_REOPEN = {"happy": 0.03, "neutral": 0.1, "angry": 0.35}
_ORDER_TOPICS = ("delivery", "damaged", "refund", "question")
_ORDER_TOPIC_WEIGHTS = {
    "happy": (0.3, 0.2, 0.2, 0.3),
    "neutral": (0.35, 0.2, 0.2, 0.25),
    "angry": (0.4, 0.25, 0.3, 0.05),
}

Timed = tuple[int, dict[str, Any]]


class SessionWriter:
    """Writes sessions and tickets of customers onto :attr:`heap`."""

    def __init__(
        self, rng: random.Random, catalogue: Catalogue, *, seed: int, tenant: str, end_ms: int
    ) -> None:
        self.rng = rng
        self.catalogue = catalogue
        self.seed = seed
        self.tenant = tenant
        self.end_ms = end_ms
        #: ``(event time ms, sequence, event dict or Customer to start a session)``.
        self.heap: list[tuple[int, int, Any]] = []
        #: Tie-breakers for heap entries, in creation order.
        self.seq = itertools.count()
        self._sessions = 0
        self._orders = 0
        #: Per customer index: orders so far, and the last order's id and first item's name.
        self.orders: dict[int, int] = {}
        self.last_order: dict[int, tuple[str, str]] = {}
        self._tickets = 0
        products = catalogue.products
        self._pid = [p.product_id for p in products]
        self._cat = [p.category for p in products]
        self._url = [f"/p/{p.product_id}" for p in products]
        self._price = [p.price for p in products]

    # -- scheduling --------------------------------------------------------------------------

    def _limit(self, customer: Customer) -> int:
        churn = customer.churn_ms
        return self.end_ms if churn is None or churn > self.end_ms else churn

    def _push(self, at_ms: int, item: Any) -> None:
        heapq.heappush(self.heap, (at_ms, next(self.seq), item))

    def _push_run(self, timed: list[Timed], limit: int) -> None:
        """Push events (in time order) as one run, dropping those at or after ``limit``."""
        run = [entry for entry in reversed(timed) if entry[0] < limit]
        if run:
            self._push(run[-1][0], run)

    def schedule_session(self, customer: Customer, at_ms: int) -> None:
        if at_ms < self._limit(customer):
            self._push(at_ms, customer)

    def _decline(self, customer: Customer, at_ms: int) -> float:
        """0 normally, rising to 1 at the churn date: the churner's fading interest."""
        churn = customer.churn_ms
        if churn is None or at_ms < churn - DECLINE_MS:
            return 0.0
        return min(1.0, (at_ms - (churn - DECLINE_MS)) / DECLINE_MS)

    # -- one session -------------------------------------------------------------------------

    def _pick(self, customer: Customer) -> int:
        """A product the customer looks at: mostly favourites, then preferred categories."""
        random = self.rng.random
        roll = random()
        if roll < 0.6:
            cum = customer.favourite_cum
            return customer.favourites[bisect(cum, random() * cum[-1])]
        catalogue = self.catalogue
        if roll < 0.88:
            categories = customer.categories
            category = categories[int(random() * len(categories))]
            cum = catalogue.category_cum_weights[category]
            return catalogue.by_category[category][bisect(cum, random() * cum[-1])]
        cum = catalogue.cum_weights
        return bisect(cum, random() * cum[-1])

    def _poisson(self, mean: float) -> int:
        threshold, k, product = math.exp(-mean), 0, self.rng.random()
        while product > threshold:
            k += 1
            product *= self.rng.random()
        return k

    def session(self, customer: Customer, at_ms: int) -> None:
        """Write the session starting at ``at_ms`` and schedule the next one."""
        rng = self.rng
        profile = customer.profile
        decline = self._decline(customer, at_ms)
        session_id = f"s-{self.seed}-{self._sessions}"
        self._sessions += 1
        known: dict[str, Any] = {
            "customer_id": customer.customer_id,
            "session_id": session_id,
            "tenant": self.tenant,
            "schema_version": 1,
        }
        consent = customer.consent
        anonymous_id: str | None = None
        if rng.random() < profile.p_anonymous:
            ids = customer.anonymous_ids
            anonymous_id = ids[0] if rng.random() < 0.7 else rng.choice(ids)
        p_buy = profile.p_buy * (1.0 - 0.7 * decline)
        if profile.name == "one_time_buyer" and customer.index in self.orders:
            p_buy = 0.03
        buy = rng.random() < p_buy
        steps = 1 + int(rng.expovariate(1.0 / profile.steps))
        login_step = -1
        if anonymous_id is not None and (buy or rng.random() < 0.5):
            login_step = rng.randrange(steps)
        logged_in = anonymous_id is None
        base: dict[str, Any] = (
            known if logged_in else
            {"anonymous_id": anonymous_id, "session_id": session_id, "tenant": self.tenant,
             "schema_version": 1}
        )
        events: list[Timed] = []
        t = at_ms
        pid, cat, url = self._pid, self._cat, self._url

        def click(kind: str, **fields: Any) -> None:
            event = {"event_id": None, "type": "click", **base, "occurred_at": None}
            if logged_in:
                event["marketing_consent"] = consent
            event["kind"] = kind
            event.update(fields)
            events.append((t, event))

        def login() -> None:
            nonlocal base, logged_in
            event = {"event_id": None, "type": "click", **known, "anonymous_id": anonymous_id,
                     "occurred_at": None, "marketing_consent": consent, "kind": "page_view",
                     "url": "/login"}
            events.append((t, event))
            base, logged_in = known, True

        def view(product: int) -> None:
            click("product_view", product_id=pid[product], category=cat[product], url=url[product])

        # Landing.
        roll = rng.random()
        last: int | None = None
        if roll < 0.45:
            click("page_view", url="/")
        elif roll < 0.8:
            category = rng.choice(customer.categories)
            click("page_view", category=category, url=f"/c/{category}")
        else:
            last = self._pick(customer)
            view(last)
        cart: list[int] = []
        cart_weight = profile.cart_weight * (3.0 if buy else 1.0)
        search_weight = profile.search_weight
        for step in range(steps):
            t += 2_000 + int(rng.expovariate(1 / 25_000))
            if step == login_step:
                login()
                t += 1_000 + int(rng.expovariate(1 / 10_000))
            can_add = last is not None and last not in cart
            weights_total = 1.0 + search_weight + 0.2 + (cart_weight if can_add else 0.0) + (
                0.05 if cart else 0.0
            )
            roll = rng.random() * weights_total
            if roll < 1.0:
                last = self._pick(customer)
                view(last)
            elif roll < 1.0 + search_weight:
                target = self._pick(customer)
                found = self.catalogue.products[target]
                query = search_query(rng, found.noun, found.name.split(" ")[0], profile.style)
                click("search", query=query, url="/search?q=" + query.replace(" ", "+"))
                t += 3_000 + int(rng.expovariate(1 / 15_000))
                last = target
                view(target)
            elif roll < 1.2 + search_weight:
                page = rng.choice(_PAGES)
                click("page_view", url=page)
            elif can_add and roll < 1.2 + search_weight + cart_weight:
                assert last is not None
                cart.append(last)
                click("add_to_cart", product_id=pid[last], category=cat[last], url=url[last])
            elif cart:
                removed = cart.pop(rng.randrange(len(cart)))
                click("remove_from_cart", product_id=pid[removed], category=cat[removed])
        order: str | None = None
        if buy:
            t += 2_000 + int(rng.expovariate(1 / 20_000))
            if not logged_in:
                login()
            target = 1 + self._poisson(profile.basket_extra)
            for _ in range(4 * target):  # bounded: a tiny catalogue may run out of products
                if len(cart) >= target:
                    break
                product = self._pick(customer)
                if product in cart:
                    continue
                last = product
                view(product)
                t += 2_000 + int(rng.expovariate(1 / 20_000))
                cart.append(product)
                click("add_to_cart", product_id=pid[product], category=cat[product],
                      url=url[product])
            t += 5_000 + int(rng.expovariate(1 / 30_000))
            click("checkout_start", url="/checkout")
            t += 20_000 + int(rng.expovariate(1 / 60_000))
            order = self._purchase(customer, cart, t, base, events)
        elif cart and rng.random() < 0.3:
            t += 5_000 + int(rng.expovariate(1 / 30_000))
            click("checkout_start", url="/checkout")  # ... and gone: an abandoned checkout
        self._push_run(events, self._limit(customer))
        if order is not None and rng.random() < profile.p_ticket_purchase * (1 + decline):
            self._ticket(customer, t + int(rng.uniform(0.2, 10) * DAY_MS), order)
        elif rng.random() < profile.p_ticket_session * (1 + 2 * decline):
            self._ticket(customer, t + int(rng.uniform(0.01, 2) * DAY_MS), None)
        self._schedule_next(customer, t, decline)

    def _purchase(
        self, customer: Customer, cart: list[int], t: int, base: dict[str, Any],
        events: list[Timed],
    ) -> str:
        rng, profile, price = self.rng, customer.profile, self._price
        order_id = f"o-{self.seed}-{self._orders}"
        self._orders += 1
        items = []
        total = 0.0
        for product in cart:
            quantity = 1
            if rng.random() < profile.p_multi_quantity:
                quantity += 1 + (rng.random() < 0.4)
            total += quantity * price[product]
            items.append({"product_id": self._pid[product], "quantity": quantity,
                          "unit_price": price[product], "category": self._cat[product]})
        event = {"event_id": None, "type": "purchase", **base, "occurred_at": None,
                 "marketing_consent": customer.consent, "order_id": order_id, "items": items,
                 "total": round(total, 2), "currency": "EUR"}
        events.append((t, event))
        self.orders[customer.index] = self.orders.get(customer.index, 0) + 1
        self.last_order[customer.index] = (order_id, self.catalogue.products[cart[0]].name)
        return order_id

    def _schedule_next(self, customer: Customer, t: int, decline: float) -> None:
        rng = self.rng
        mean_days = customer.profile.gap_days * (1 + 2 * decline)
        if customer.profile.name == "one_time_buyer" and customer.index in self.orders:
            mean_days *= 3
        at = t + max(MIN_GAP_MS, int(rng.expovariate(1 / mean_days) * DAY_MS))
        hour = (at % DAY_MS) // HOUR_MS
        if hour < 7 and rng.random() < 0.8:  # people mostly sleep at night
            at += (7 - hour) * HOUR_MS + int(rng.random() * 3 * HOUR_MS)
        self.schedule_session(customer, at)

    # -- tickets -----------------------------------------------------------------------------

    def _ticket(self, customer: Customer, opened_ms: int, order: str | None) -> None:
        """Opened -> replied -> resolved (CSAT), sometimes reopened -> replied -> resolved again.

        The customer's mood decides the wording and the CSAT; a reopened ticket rates one lower.
        """
        rng, mood = self.rng, customer.mood
        ticket_id = f"t-{self.seed}-{self._tickets}"
        self._tickets += 1
        last_order = self.last_order.get(customer.index)
        if order is not None and last_order is not None:
            topic = rng.choices(_ORDER_TOPICS, weights=_ORDER_TOPIC_WEIGHTS[mood])[0]
            order_id, item = last_order
        else:
            topic = rng.choice(("question", "account"))
            order_id, item = "-", self.catalogue.products[self._pick(customer)].name
        subject, body = ticket_text(rng, mood, topic, item, order_id)
        channel = rng.choice(CHANNELS)
        common = {"customer_id": customer.customer_id, "tenant": self.tenant,
                  "schema_version": 1, "occurred_at": None,
                  "marketing_consent": customer.consent, "ticket_id": ticket_id,
                  "channel": channel}
        values, weights = _CSAT[mood]
        csat = rng.choices(values, weights=weights)[0]
        t = opened_ms
        timeline: list[Timed] = [(t, {"status": "opened", "subject": subject, "body": body})]
        reopen = rng.random() < _P_REOPEN[mood]
        for round_ in range(2 if reopen else 1):
            if round_:
                t += int(rng.uniform(6, 72) * HOUR_MS)
                timeline.append((t, {"status": "reopened", "subject": "Re: " + subject,
                                     "body": reopen_text(mood)}))
                csat = max(1, csat - 1)
            t += int(rng.uniform(0.5, 24) * HOUR_MS)
            timeline.append((t, {"status": "replied", "subject": "Re: " + subject,
                                 "body": follow_up_text(rng, mood)}))
            t += int(rng.uniform(1, 72) * HOUR_MS)
            timeline.append((t, {"status": "resolved", "subject": "Re: " + subject,
                                 "csat": csat, "category": _CATEGORY_OF_TOPIC[topic]}))
        self._push_run(
            [(at, {"event_id": None, "type": "ticket", **common, **fields})
             for at, fields in timeline],
            self._limit(customer),
        )
