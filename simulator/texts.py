"""Small text templates: support-ticket wording that depends on the customer's mood, and
search queries.

The wording carries the signal a sentiment model should find (angry customers write "still
not delivered, terrible, refund now"; happy ones "thanks, love it"), with enough variety that
it is not a lookup table.

>>> import random
>>> subject, body = ticket_text(random.Random(3), "angry", "delivery", "wireless speaker", "o-1")
>>> subject.startswith(("Order", "Where", "Still", "Unacceptable", "Parcel"))
True
"""

from __future__ import annotations

import random

MOODS = ("happy", "neutral", "angry")
TOPICS = ("delivery", "damaged", "refund", "question", "account")
CHANNELS = ("email", "chat", "phone", "web_form")

_SUBJECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "angry": {
        "delivery": ("Order {order} still not delivered!", "Where is my order {order}???",
                     "Still waiting for {order}", "Unacceptable delivery delay",
                     "Parcel never arrived"),
        "damaged": ("Broken {item}, terrible quality", "Received a damaged {item}",
                    "Worst purchase ever"),
        "refund": ("Refund NOW", "I want my money back", "Still no refund for {order}"),
        "question": ("Nobody answers my questions", "Useless product page for {item}"),
        "account": ("Locked out of my account AGAIN", "Stop charging my card"),
    },
    "neutral": {
        "delivery": ("Delivery status of {order}", "When will {order} arrive?",
                     "Tracking number for {order}"),
        "damaged": ("Issue with my {item}", "{item} not working as expected"),
        "refund": ("Return request for {order}", "How do I return the {item}?"),
        "question": ("Question about the {item}", "Is the {item} in stock?"),
        "account": ("Change my delivery address", "Password reset"),
    },
    "happy": {
        "delivery": ("Quick question about {order}", "Delivery of {order}"),
        "damaged": ("Small issue with my lovely {item}", "{item}: tiny scratch"),
        "refund": ("Exchange for a different size", "Return of a gift"),
        "question": ("Love the {item}! A question", "Thanks, a quick question"),
        "account": ("Update my newsletter settings", "Thanks for the great service"),
    },
}

_OPENINGS = {
    "angry": ("This is terrible.", "I am really disappointed and angry.",
              "This is the worst service I have ever had.", "Unbelievable."),
    "neutral": ("Hello,", "Hi,", "Good day,"),
    "happy": ("Hi there, thanks for the great shop!", "Hello, I love shopping with you.",
              "Thanks a lot for the quick delivery last time!"),
}

_MIDDLES = {
    "angry": {
        "delivery": "My order {order} is still not delivered after two weeks.",
        "damaged": "The {item} arrived broken and is useless.",
        "refund": "I returned the {item} and still have no refund.",
        "question": "Nobody replies and the information about the {item} is wrong.",
        "account": "I cannot log in and you keep sending me emails.",
    },
    "neutral": {
        "delivery": "Could you tell me when order {order} will be delivered?",
        "damaged": "The {item} does not work as described.",
        "refund": "I would like to return the {item} from order {order}.",
        "question": "Could you tell me more about the {item}?",
        "account": "I would like to update the details of my account.",
    },
    "happy": {
        "delivery": "No rush at all, just wondering when order {order} will arrive.",
        "damaged": "The {item} is great, there is just a tiny scratch on it.",
        "refund": "I love the {item} but would like another size, if possible.",
        "question": "I love the {item} and wonder whether there is a matching accessory.",
        "account": "Everything works great, I just want to change my email settings.",
    },
}

_CLOSINGS = {
    "angry": ("Refund now or I will never order again!", "Terrible. Fix this immediately.",
              "I want a refund now.", "Awful experience, I am done with this shop."),
    "neutral": ("Thanks.", "Regards.", "Thank you for your help."),
    "happy": ("Thanks, love it!", "Keep up the great work!", "Thank you so much, you are great!"),
}

_FOLLOW_UPS = {
    "angry": ("Your answer does not help at all. Still not solved, terrible!",
              "I already told you this. Refund now!", "This is ridiculous, still waiting."),
    "neutral": ("Thanks for the answer, I will check.", "OK, please keep me posted.",
                "Understood, I will wait."),
    "happy": ("Thank you, that was very helpful!", "Great, thanks a lot!",
              "Wonderful, love the quick help!"),
}

_REOPENS = {
    "angry": "The problem is NOT solved. Reopening. Terrible support, I want a refund now.",
    "neutral": "The issue came back, could you please have another look?",
    "happy": "Sorry to bother you again, there is one more small thing.",
}


def ticket_text(
    rng: random.Random, mood: str, topic: str, item: str, order: str
) -> tuple[str, str]:
    """The subject and body of a newly opened ticket."""
    subject = rng.choice(_SUBJECTS[mood][topic]).format(item=item, order=order)
    body = " ".join(
        (
            rng.choice(_OPENINGS[mood]),
            _MIDDLES[mood][topic].format(item=item, order=order),
            rng.choice(_CLOSINGS[mood]),
        )
    )
    return subject, body


def follow_up_text(rng: random.Random, mood: str) -> str:
    """The customer's answer after support replied."""
    return rng.choice(_FOLLOW_UPS[mood])


def reopen_text(mood: str) -> str:
    return _REOPENS[mood]


_BARGAIN_WORDS = ("cheap", "sale", "discount", "deal", "under 20", "clearance")
_PREMIUM_WORDS = ("best", "premium", "luxury", "top rated", "pro")


def search_query(rng: random.Random, noun: str, adjective: str, style: str) -> str:
    """A search query for a product noun, phrased as a customer of ``style`` would."""
    roll = rng.random()
    if style == "bargain" and roll < 0.6:
        return f"{rng.choice(_BARGAIN_WORDS)} {noun}"
    if style == "premium" and roll < 0.5:
        return f"{rng.choice(_PREMIUM_WORDS)} {noun}"
    if roll < 0.4:
        return f"{adjective} {noun}"
    return noun
