"""Support-ticket wording for the family shops, with the sentiment each text plants.

Three pools: clearly negative (a customer with a real grievance, CSAT 1-2), clearly positive
(praise or thanks, CSAT 4-5), and neutral or mixed (questions, small niggles, "late but
fine", CSAT 3). Texts are written like customers write: an optional greeting, the message
with the product, order number, courier or amount filled in, an optional sign-off. Sign-offs
follow the mood, so a clear-cut text never carries a stray "thanks" or a stray complaint.

The pools deliberately use more words than any fixed sentiment lexicon knows ("smashed",
"fed up", "made my day"), so a model that only counts lexicon words is not flattered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["NEGATIVE", "NEUTRAL", "POSITIVE", "TicketTemplate", "write_ticket"]


@dataclass(frozen=True)
class TicketTemplate:
    subjects: tuple[str, ...]
    body: str

    @property
    def needs_order(self) -> bool:
        return "{order}" in self.body or any("{order}" in s for s in self.subjects)


def _t(subjects: tuple[str, ...], body: str) -> TicketTemplate:
    return TicketTemplate(subjects=subjects, body=body)


NEGATIVE: tuple[TicketTemplate, ...] = (
    _t(("Order #{order} still not here", "Where is my order?", "Delivery {days} days late"),
       "I ordered the {product} {days} days ago and it still hasn't arrived. The tracking page"
       " hasn't moved since the day I paid. This is completely unacceptable and I'm fed up"
       " with waiting."),
    _t(("Item arrived smashed", "Damaged {product}"),
       "The {product} arrived smashed. The box was crushed on one side and the thing inside"
       " is cracked and unusable. I'm really disappointed, I paid full price for this."),
    _t(("Wrong item sent", "This is not what I ordered"),
       "I received the wrong item. I ordered the {product} and got something completely"
       " different. Nobody has answered my two emails and I'm getting very annoyed."),
    _t(("Still waiting for my refund", "Refund of {amount} EUR missing"),
       "I sent the {product} back three weeks ago and I still haven't had my refund of"
       " {amount} EUR. Your returns page promises five days. Terrible service."),
    _t(("Charged twice for order #{order}", "Double payment!"),
       "I have been charged twice for order #{order}. Refund the duplicate payment"
       " immediately please, I'm furious that this happened."),
    _t(("{product} broke after a week", "Poor quality"),
       "The {product} fell apart after one week. Shoddy quality, honestly the worst purchase"
       " I've made this year."),
    _t(("Complaint about your phone agent", "Rude staff"),
       "The agent I spoke to on the phone yesterday was rude and hung up on me. I have never"
       " been treated this badly by a shop."),
    _t(("Parts missing from order #{order}", "Incomplete delivery"),
       "Order #{order} came with pieces missing from the {product} box, so it's no use as it"
       " is. Really frustrating, it was meant to be a present."),
    _t(("Order cancelled without warning", "Why was order #{order} cancelled?"),
       "You cancelled my order #{order} without telling me and I only found out when it never"
       " turned up. Awful communication, I needed it for a birthday."),
    _t(("Parcel left in the rain", "{courier} ruined my delivery"),
       "{courier} left the parcel outside in the pouring rain and the {product} is ruined."
       " Completely unacceptable."),
    _t(("Not as described", "Looks nothing like the photos"),
       "The {product} looks nothing like the pictures on your site. Cheap material, sloppy"
       " finish. I want to send it back and I'm not happy at all."),
    _t(("Locked out of my account", "Password reset broken"),
       "I'm locked out of my account and the password reset email never arrives. I've tried"
       " five times now. Useless."),
    _t(("Discount code failed", "Promo code did not work"),
       "Your discount code failed at checkout and I ended up paying full price for the"
       " {product}. I feel misled and very disappointed."),
    _t(("Third email about order #{order}", "Nobody answers"),
       "This is the third time I'm writing about order #{order}. Nobody answers. I will never"
       " order from you again."),
    _t(("Defective {product}", "Dead on arrival"),
       "The {product} is defective straight out of the box: it came apart the first time I"
       " used it. Awful quality control."),
    _t(("Overcharged on order #{order}", "Wrong amount taken"),
       "I was overcharged by {amount} EUR on order #{order}. I want that money back, this is"
       " not acceptable."),
    _t(("Failed delivery that wasn't", "{courier} lied about delivery"),
       "{courier} claims they tried to deliver but I was home all day. Now the {product} is"
       " stuck at a depot miles away. Dreadful."),
    _t(("Return refused", "Faulty {product}, return rejected"),
       "You refused my return of the {product} even though it was faulty. I'm angry and I'll"
       " be disputing the charge with my bank."),
    _t(("Still no reply", "Ignored for a week"),
       "I opened a request a week ago about the {product} and nobody has bothered to reply."
       " Worst customer service I've dealt with."),
    _t(("Order #{order} arrived opened", "Used item sent as new"),
       "The {product} from order #{order} had clearly been used: scratches everywhere and"
       " someone else's hair on it. Disgusting."),
    _t(("Delivery damaged my door", "Complaint about courier"),
       "The {courier} driver threw the parcel over the gate and the {product} is dented."
       " Appalling handling, I expect compensation."),
)

POSITIVE: tuple[TicketTemplate, ...] = (
    _t(("Thank you!", "Lovely {product}"),
       "Thank you so much! The {product} arrived a day early and it's perfect. Lovely"
       " packaging too."),
    _t(("Great chat support", "Compliment for your team"),
       "Just a quick note to say your colleague on the chat was brilliant: sorted my return in"
       " five minutes. Much appreciated."),
    _t(("Love it", "Best purchase in ages"),
       "I love the {product}. Best thing I've bought in ages, I'll definitely order again."),
    _t(("Order #{order} arrived", "Quick delivery, thanks"),
       "Order #{order} arrived quickly and in perfect condition. Really happy with the service,"
       " thank you."),
    _t(("Replacement received", "Thanks for sorting it"),
       "The replacement {product} arrived this morning and this one is perfect. Thanks for"
       " sorting it out so fast."),
    _t(("Kudos to your driver", "Friendly delivery"),
       "Wanted to compliment the {courier} driver who brought my parcel: friendly, on time and"
       " careful with it. A pleasure."),
    _t(("Refund already in", "Impressively quick refund"),
       "The refund was in my account the next day, impressively quick. Thanks for making"
       " returns so easy."),
    _t(("Delighted with the quality", "{category} order"),
       "I was nervous buying {category} online but the {product} is excellent quality."
       " Delighted!"),
    _t(("Thanks for the voucher", "Lovely gesture"),
       "Thank you for the birthday voucher, such a lovely gesture! I used it on the {product}"
       " and I'm very pleased."),
    _t(("Exactly as pictured", "Spot-on description"),
       "Your description was spot on and the {product} is exactly what I pictured. Happy"
       " customer here."),
    _t(("Beautifully packed", "Order #{order}: wow"),
       "Amazing service as always. Order #{order} came beautifully wrapped, thank you!"),
    _t(("Handwritten note", "You made my day"),
       "Whoever packed order #{order}: the handwritten note made my day. Thank you, it's the"
       " little things."),
    _t(("Exceeded expectations", "Fantastic value"),
       "The {product} exceeded my expectations. Fantastic value, and delivery was super fast."),
    _t(("Helpful phone call", "Thanks for the help today"),
       "Great help on the phone today, the agent explained everything clearly and patiently."
       " Thank you!"),
    _t(("Five stars", "Smooth from start to finish"),
       "Everything about this order was smooth, from checkout to doorstep. Five stars from"
       " me, I've already recommended you to friends."),
    _t(("Gift was a hit", "Thank you"),
       "Bought the {product} as a present and it was a huge hit. Wonderful shop, thank you."),
)

NEUTRAL: tuple[TicketTemplate, ...] = (
    _t(("Change delivery address", "Address for order #{order}"),
       "Can I change the delivery address for order #{order}? I'm moving next week."),
    _t(("Other colours?", "Question about the {product}"),
       "Do you have the {product} in a different colour or size?"),
    _t(("Invoice request", "VAT invoice for order #{order}"),
       "Could you send me a VAT invoice for order #{order}, please? It's for my employer."),
    _t(("Box was dented", "Delivery of the {product}"),
       "The {product} arrived. The box was a bit dented but the item itself seems OK, just"
       " letting you know."),
    _t(("Question about a product", "Is the {product} the new version?"),
       "Is the {product} you sell now the same as last year's? The description reads"
       " differently."),
    _t(("Late, but arrived", "Order #{order} update"),
       "Order #{order} came a few days later than promised, though the {product} itself is"
       " fine."),
    _t(("Smaller than expected", "Not sure about the {product}"),
       "The {product} is nice enough but smaller than I expected. I haven't decided yet"
       " whether to keep it."),
    _t(("Returns timing", "How long do returns take?"),
       "How long does a return take to process once it reaches your warehouse?"),
    _t(("Update my phone number", "Account details"),
       "Please update the phone number on my account, I have a new one since last month."),
    _t(("Conflicting emails", "Status of order #{order}?"),
       "I got two emails about order #{order}, one says shipped, the other says processing."
       " Which one is right?"),
    _t(("Instructions", "Setting up the {product}"),
       "Good price on the {product}, although the care instructions were confusing. I worked"
       " it out in the end after some trial and error."),
    _t(("Back in stock?", "Restock of the {product}"),
       "When will the {product} be back in stock? It has said 'soon' for a while."),
    _t(("Combine shipping", "Join order #{order} with the next one"),
       "Can order #{order} be sent together with my next order to save on shipping?"),
    _t(("Delivery countries", "Shipping abroad"),
       "Do you deliver to Switzerland, and if so which courier do you use there?"),
    _t(("A spare part was missing", "Small thing about the {product}"),
       "The {product} arrived on time. The little spare part listed on the box wasn't there,"
       " but I can manage without it for now."),
    _t(("Gift wrapping", "Question before ordering"),
       "Is gift wrapping available for {category} items, and does it cost extra?"),
)

_GREETINGS = ("", "Hello,", "Hi,", "Hi there,", "Good morning,", "Dear support team,",
              "Hello team,")
_SIGN_OFFS: dict[int, tuple[str, ...]] = {
    -1: ("", "Regards,", "Waiting for an answer.", "Sort this out please.",
         "A very unhappy customer"),
    0: ("", "Regards,", "Best,", "Kind regards,", "Cheers,"),
    1: ("", "Many thanks,", "Thanks again,", "Best wishes,", "All the best,"),
}
_NAMES = ("Anna", "Ben", "Chloe", "Dmitri", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas",
          "Kasia", "Luca", "Maya", "Nils", "Olu", "Priya", "Rosa", "Sven", "Tariq", "Yara")
_COURIERS = ("DHL", "DPD", "UPS", "Hermes", "GLS", "the courier")
_POOLS: dict[int, tuple[TicketTemplate, ...]] = {-1: NEGATIVE, 0: NEUTRAL, 1: POSITIVE}


def write_ticket(sentiment: int, rng: random.Random, *, product: str, category: str,
                 order_number: int | None) -> tuple[str, str]:
    """A (subject, body) of the given sentiment (-1, 0, +1) about ``product`` and, when given,
    the customer's recent order."""
    pool = [t for t in _POOLS[sentiment] if order_number is not None or not t.needs_order]
    template = rng.choice(pool)
    slots = {
        "product": product,
        "category": category,
        "order": str(order_number),
        "days": str(rng.randint(6, 16)),
        "amount": f"{rng.uniform(8, 140):.2f}",
        "courier": rng.choice(_COURIERS),
    }
    subject = _capitalised(rng.choice(template.subjects).format(**slots))
    body = _capitalised(template.body.format(**slots))
    greeting = rng.choice(_GREETINGS)
    sign_off = rng.choice(_SIGN_OFFS[sentiment])
    parts = [greeting, body]
    if sign_off:
        parts.append(f"{sign_off}\n{rng.choice(_NAMES)}" if sign_off.endswith(",") else sign_off)
    return subject, "\n\n".join(p for p in parts if p)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]
