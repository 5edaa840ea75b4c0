"""A product catalogue for one family shop: categories, prices, popularity and taste clusters.

A shop draws 10-13 of the categories below, each with 22-38 products whose prices scatter
(lognormal) around the category's typical price. Popularity within a category follows Zipf's
law, so a popularity recommender has something real to find. Each category's products are
dealt into three *taste clusters* (round-robin by popularity rank, so every cluster holds a
popular product and a long tail): a customer's favourite products come from one cluster of
their favourite category. Customers who share a cluster share favourites, which is the
structure a collaborative recommender can find and a popularity list cannot.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Catalogue", "Product", "build_catalogue"]

#: (category, typical unit price in EUR, nouns its products are named by).
_CATEGORIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("books", 14.0, ("novel", "cookbook", "atlas", "biography", "travel guide", "poetry book")),
    ("music", 12.0, ("vinyl record", "CD box set", "songbook", "guitar strings", "ukulele")),
    ("toys", 24.0, ("puzzle", "building set", "plush bear", "board game", "kite")),
    ("kitchen", 32.0, ("blender", "chef's knife", "frying pan", "teapot", "spice rack")),
    ("garden", 38.0, ("hose reel", "pruning shears", "planter", "bird feeder", "rake")),
    ("fashion", 45.0, ("wool scarf", "denim jacket", "linen shirt", "rain coat", "knit jumper")),
    ("shoes", 68.0, ("trail runner", "leather boot", "canvas sneaker", "sandal", "loafer")),
    ("beauty", 17.0, ("face cream", "shampoo", "lip balm", "perfume", "hair dryer")),
    ("sports", 52.0, ("yoga mat", "dumbbell set", "bike helmet", "tennis racket", "water bottle")),
    ("electronics", 140.0, ("headphones", "speaker", "smart watch", "e-reader", "webcam")),
    ("computers", 380.0, ("laptop", "monitor", "keyboard", "graphics tablet", "docking station")),
    ("furniture", 240.0, ("armchair", "bookcase", "desk", "bed frame", "floor lamp")),
    ("jewellery", 110.0, ("silver ring", "pendant", "bracelet", "pair of earrings", "watch")),
    ("pets", 21.0, ("dog bed", "cat tree", "leash", "aquarium filter", "chew toy")),
    ("grocery", 9.0, ("coffee beans", "olive oil", "tea sampler", "honey jar", "chocolate box")),
)

_ADJECTIVES = ("classic", "compact", "deluxe", "everyday", "premium", "vintage", "eco",
               "travel", "pro", "family", "mini", "heritage", "urban", "essential")

TASTE_CLUSTERS = 3


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    name: str
    price: float
    #: Zipf weight within its category (rank 1 is the most popular).
    popularity: float
    #: Which taste cluster of its category the product belongs to.
    cluster: int


@dataclass(frozen=True)
class Catalogue:
    products: tuple[Product, ...]
    categories: tuple[str, ...]
    #: How often a category is visited, relative to the others (same order as ``categories``).
    category_weights: tuple[float, ...]
    typical_price: dict[str, float]
    by_category: dict[str, tuple[Product, ...]]
    nouns: dict[str, tuple[str, ...]]

    def popular_in(self, category: str, rng: random.Random) -> Product:
        """One product of ``category``, drawn by popularity."""
        products = self.by_category[category]
        return rng.choices(products, weights=[p.popularity for p in products])[0]

    def other_category(self, favourite: str, rng: random.Random) -> str:
        """A category other than ``favourite``, drawn by how often categories are visited."""
        choices = [(c, w) for c, w in zip(self.categories, self.category_weights, strict=True)
                   if c != favourite]
        return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def build_catalogue(family: str, rng: random.Random) -> Catalogue:
    """Draw one shop's catalogue; product ids are ``p-<family>-<n>``."""
    chosen = rng.sample(_CATEGORIES, rng.randint(10, 13))
    products: list[Product] = []
    by_category: dict[str, tuple[Product, ...]] = {}
    for name, typical, nouns in chosen:
        in_category = []
        for rank in range(1, rng.randint(22, 38) + 1):
            price = round(typical * math.exp(rng.gauss(0.0, 0.5)), 2)
            label = f"{rng.choice(_ADJECTIVES)} {rng.choice(nouns)}"
            product = Product(product_id=f"p-{family}-{len(products) + 1}", category=name,
                              name=label, price=max(price, 0.99), popularity=rank ** -1.1,
                              cluster=(rank - 1) % TASTE_CLUSTERS)
            products.append(product)
            in_category.append(product)
        by_category[name] = tuple(in_category)
    # Category popularity: a gentle Zipf over a random order of the chosen categories.
    weights = tuple((rank + 1) ** -0.7 for rank in range(len(chosen)))
    return Catalogue(products=tuple(products), categories=tuple(c[0] for c in chosen),
                     category_weights=weights, typical_price={c[0]: c[1] for c in chosen},
                     by_category=by_category, nouns={c[0]: c[2] for c in chosen})
