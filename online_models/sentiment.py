"""Ticket sentiment and urgency: VADER as the prior, blended with a classifier learning from
CSAT.

The prior is VADER (Hutto and Gilbert, 2014; the ``vaderSentiment`` package): a lexicon of
about 7,500 rated words and emoticons with rules for negation, intensifiers, "but" and
capitals, made for short informal texts such as support tickets. A shop's own words ("the
courier left it in the rain") are learnt from the CSAT its customers give at resolution.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from typing import Any, NamedTuple

from river import feature_extraction, metrics, naive_bayes
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from online_models.evaluation import BinnedROCAUC
from online_models.kept import answer_until_learnt

__all__ = ["SentimentModel", "SentimentScore", "lexicon_sentiment", "urgency"]

#: Words that ask for action within the day, with their weight: time pressure, money taken,
#: security, safety, escalation, repeated contact.
_URGENT: dict[str, float] = {
    "urgent": 1.0, "urgently": 1.0, "asap": 1.0, "immediately": 1.0, "emergency": 1.0,
    "now": 1.0, "today": 1.0, "tonight": 1.0, "tomorrow": 0.5, "critical": 1.0, "stuck": 1.0,
    "blocked": 1.0, "outage": 1.0, "down": 1.0, "deadline": 1.0, "escalate": 1.0,
    "escalated": 1.0, "lawyer": 1.0, "chargeback": 1.0, "fraud": 1.0, "overcharged": 1.0,
    "twice": 1.0, "unauthorised": 1.0, "unauthorized": 1.0, "hacked": 1.0, "stolen": 1.0,
    "overdrawn": 1.0, "dangerous": 1.0, "unsafe": 1.0, "fire": 1.0, "smoke": 1.0,
    "smoking": 1.0, "burn": 1.0, "burned": 1.0, "burnt": 1.0, "injured": 1.0, "sick": 1.0,
    "recall": 0.5, "police": 1.0, "again": 0.5, "weeks": 0.5, "months": 0.5,
}
#: Two-word phrases of the same kinds.
_URGENT_PHRASES: dict[tuple[str, str], float] = {
    ("third", "time"): 1.0, ("fourth", "time"): 1.0, ("many", "times"): 1.0,
    ("consumer", "protection"): 1.0, ("trading", "standards"): 1.0, ("my", "bank"): 0.5,
    ("need", "it"): 0.5, ("right", "away"): 1.0,
}
_TOKEN = re.compile(r"[a-z']+|!")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@functools.cache
def _vader() -> SentimentIntensityAnalyzer:
    """VADER's analyzer (it reads its lexicon once; read-only afterwards)."""
    return SentimentIntensityAnalyzer()


def lexicon_sentiment(text: str) -> float:
    """VADER's compound polarity of ``text``, in ``[-1, 1]``.

    >>> lexicon_sentiment("Great service, thanks!") > 0.5
    True
    >>> lexicon_sentiment("The parcel is not good and arrived broken") < -0.3
    True
    >>> lexicon_sentiment("Where is my order?")
    0.0
    """
    return float(_vader().polarity_scores(text)["compound"])


def urgency(text: str, sentiment: float = 0.0) -> float:
    """Urgency in ``[0, 1]`` from urgent words and phrases, exclamation marks, shouting and
    how negative the text is (``sentiment`` in ``[-1, 1]``, the sentiment model's score).

    >>> urgency("URGENT: charged twice, fix this now!!!")
    1.0
    >>> urgency("Could you tell me the opening hours?")
    0.0
    >>> urgency("Third time I write: the kettle smoking is dangerous", sentiment=-0.6)
    1.0
    >>> urgency("the parcel is late", sentiment=-0.4)
    0.1
    """
    tokens = _tokens(text)
    signal = sum(_URGENT.get(t, 0.0) for t in tokens) + 0.25 * min(tokens.count("!"), 4)
    signal += sum(_URGENT_PHRASES.get(pair, 0.0) for pair in itertools.pairwise(tokens))
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.6:
        signal += 1.0
    signal += 0.5 * max(-sentiment, 0.0)
    return min(1.0, signal / 2.0)


class SentimentScore(NamedTuple):
    sentiment: float  # [-1, 1]
    urgency: float  # [0, 1]
    source: str  # "lexicon", "blend" or "model"


class SentimentModel:
    """``BagOfWords | MultinomialNB`` learning from CSAT, blended with the VADER prior.

    A resolved ticket with ``csat <= 2`` is a negative example, ``csat >= 4`` a positive one
    (3 says nothing). The classifier's ``2 * P(positive) - 1`` is blended with the lexicon
    score with weight ``n / (n + prior_strength)`` after ``n`` examples, so the prior rules at
    cold start and fades as evidence accumulates. Urgency is lexical.

    Parameters
    ----------
    prior_strength
        Examples at which model and lexicon weigh the same.
    alpha
        Additive smoothing of the naive Bayes.

    Attributes
    ----------
    model
        The River pipeline.
    example_count
        CSAT examples learnt (neutral ones excluded).
    accuracy, roc_auc
        Progressive accuracy of the sign of :meth:`score`, and ROC-AUC of the score, on
        CSAT, each ticket scored before it is learnt.

    Examples
    --------
    >>> model = SentimentModel(prior_strength=5)
    >>> model.score("the widget arrived").source
    'lexicon'
    >>> for _ in range(50):
    ...     _ = model.learn("the widget arrived squeaking", csat=1)
    ...     _ = model.learn("the widget arrived on time", csat=5)
    >>> model.score("it is squeaking").sentiment < 0 < model.score("on time").sentiment
    True
    """

    def __init__(self, *, prior_strength: float = 50.0, alpha: float = 1.0) -> None:
        self.prior_strength = prior_strength
        self.alpha = alpha
        # Typed Any: River's Pipeline stubs expect dicts, but this one starts from raw text.
        self.model: Any = feature_extraction.BagOfWords(
            lowercase=True, ngram_range=(1, 2)
        ) | naive_bayes.MultinomialNB(alpha=alpha)
        self.accuracy = metrics.Accuracy()
        self.roc_auc = BinnedROCAUC()
        self.example_count = 0
        self._labels_seen: set[bool] = set()

    @property
    def model_version(self) -> str:
        return f"sentiment-v1+{self.example_count}"

    def learn(self, text: str, csat: int) -> bool:
        """Learn from a resolved ticket's text and CSAT (1-5); returns whether it was used."""
        if 2 < csat < 4:
            return False
        if not self.model["BagOfWords"].transform_one(text):
            # No word to learn (empty, punctuation only): learnt, it would count as a class
            # seen while the model's vocabulary stays empty, and scoring divides by its size.
            return False
        positive = csat >= 4
        sentiment = self.score(text).sentiment
        self.accuracy.update(positive, sentiment > 0)
        self.roc_auc.update(positive, (sentiment + 1.0) / 2.0)
        self.model.learn_one(text, positive)
        self._labels_seen.add(positive)
        self.example_count += 1
        return True

    def score(self, text: str) -> SentimentScore:
        """Sentiment and urgency of ``text`` (pure; the last one is kept until the model
        learns, see :mod:`online_models.kept`)."""
        return answer_until_learnt(self, "_last_score", text, self._score)

    def _score(self, text: str) -> SentimentScore:
        prior = lexicon_sentiment(text)
        if len(self._labels_seen) < 2:  # a one-class model has nothing to say yet
            return SentimentScore(prior, urgency(text, prior), "lexicon")
        p_positive = self._p_positive(text)
        learned = 2.0 * p_positive - 1.0
        weight = self.example_count / (self.example_count + self.prior_strength)
        sentiment = weight * learned + (1.0 - weight) * prior
        sentiment = max(-1.0, min(1.0, sentiment))
        return SentimentScore(
            sentiment, urgency(text, sentiment), "model" if weight > 0.9 else "blend"
        )

    def _p_positive(self, text: str) -> float:
        # Same as model.predict_proba_one, minus scipy's logsumexp (about 2 ms per call).
        terms = self.model["BagOfWords"].transform_one(text)
        log_likelihood = self.model["MultinomialNB"].joint_log_likelihood(terms)
        margin = log_likelihood[False] - log_likelihood[True]
        return 1.0 / (1.0 + math.exp(min(margin, 700.0)))

    def metrics_dict(self) -> dict[str, object]:
        return {
            "model_version": self.model_version,
            "examples": self.example_count,
            "accuracy": self.accuracy.get() if self.example_count else None,
            "roc_auc": self.roc_auc.get() if self.example_count else None,
        }
