"""The simulated shop's catalogue: products in categories, with Zipf popularity and prices.

Everything is precomputed once (cumulative weights for :meth:`random.Random.choices`), so
drawing a product while generating events costs a bisect, not a numpy call.

>>> import random
>>> catalogue = Catalogue.build(random.Random(1), size=200)
>>> len(catalogue.products), len(catalogue.categories)
(200, 20)
>>> product = catalogue.products[0]
>>> product.product_id, product.category in catalogue.categories, product.price > 0
('p-00000', True, True)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

#: Category name -> (median price in EUR, a few nouns shoppers search for).
CATEGORIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "electronics": (120.0, ("headphones", "charger", "speaker", "tablet", "camera")),
    "books": (16.0, ("novel", "cookbook", "biography", "thriller", "atlas")),
    "fashion": (45.0, ("jacket", "dress", "jeans", "scarf", "shirt")),
    "home": (55.0, ("lamp", "cushion", "curtain", "rug", "mirror")),
    "garden": (35.0, ("hose", "planter", "seeds", "shears", "lantern")),
    "toys": (25.0, ("puzzle", "doll", "blocks", "robot", "kite")),
    "sports": (60.0, ("yoga mat", "dumbbells", "running shoes", "bike helmet", "tent")),
    "beauty": (22.0, ("lipstick", "serum", "perfume", "shampoo", "moisturizer")),
    "grocery": (8.0, ("coffee", "olive oil", "tea", "chocolate", "pasta")),
    "music": (18.0, ("vinyl", "guitar strings", "album", "ukulele", "metronome")),
    "movies": (14.0, ("blu-ray", "box set", "documentary", "anime", "classic film")),
    "games": (50.0, ("board game", "controller", "console game", "card game", "headset")),
    "pets": (20.0, ("dog food", "cat toy", "leash", "aquarium", "pet bed")),
    "baby": (30.0, ("stroller", "diapers", "bottle", "onesie", "baby monitor")),
    "automotive": (40.0, ("wiper blades", "car charger", "seat cover", "dash cam", "tyre gauge")),
    "office": (15.0, ("notebook", "pen set", "desk organizer", "stapler", "monitor stand")),
    "jewelry": (90.0, ("ring", "necklace", "bracelet", "earrings", "watch")),
    "shoes": (70.0, ("sneakers", "boots", "sandals", "loafers", "slippers")),
    "health": (19.0, ("vitamins", "thermometer", "first aid kit", "massage gun", "scale")),
    "kitchen": (38.0, ("knife", "blender", "frying pan", "kettle", "mixing bowl")),
}

ADJECTIVES = (
    "classic", "compact", "deluxe", "eco", "premium", "smart", "vintage", "wireless",
    "organic", "portable", "mini", "pro", "soft", "bold", "everyday", "limited edition",
)

#: Zipf exponent of product popularity (rank r is drawn with weight 1 / r**s).
ZIPF_EXPONENT = 1.07


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    category: str
    noun: str
    price: float
    #: Global popularity rank, 1 = best seller.
    rank: int


@dataclass
class Catalogue:
    """Products, their categories, and precomputed samplers."""

    products: list[Product]
    categories: list[str]
    #: Indices of the products of each category, most popular first.
    by_category: dict[str, list[int]]
    #: Cumulative Zipf weights over ``products`` (global popularity).
    cum_weights: list[float]
    #: Cumulative Zipf weights over ``by_category[c]``.
    category_cum_weights: dict[str, list[float]]

    @classmethod
    def build(cls, rng: random.Random, *, size: int = 2000) -> Catalogue:
        """A catalogue of ``size`` products spread unevenly over the 20 categories."""
        if size < len(CATEGORIES):
            raise ValueError(f"catalogue_size must be at least {len(CATEGORIES)}")
        categories = list(CATEGORIES)
        # Uneven category sizes: some categories are far bigger than others.
        shares = [rng.uniform(0.4, 1.6) for _ in categories]
        # Every category gets at least one product; the rest is spread by share.
        extra = rng.choices(categories, weights=shares, k=size - len(categories))
        assignment = list(categories) + extra
        rng.shuffle(assignment)  # position in the list is the popularity rank
        products: list[Product] = []
        for index, category in enumerate(assignment):
            median, nouns = CATEGORIES[category]
            noun = rng.choice(nouns)
            name = f"{rng.choice(ADJECTIVES)} {noun}"
            price = round(max(0.99, median * rng.lognormvariate(0.0, 0.55)), 2)
            products.append(Product(f"p-{index:05d}", name, category, noun, price, index + 1))
        weights = [1.0 / (product.rank**ZIPF_EXPONENT) for product in products]
        by_category: dict[str, list[int]] = {category: [] for category in categories}
        for index, product in enumerate(products):
            by_category[product.category].append(index)
        category_cum_weights = {
            category: list(accumulate(weights[index] for index in indices))
            for category, indices in by_category.items()
        }
        return cls(
            products=products,
            categories=categories,
            by_category=by_category,
            cum_weights=list(accumulate(weights)),
            category_cum_weights=category_cum_weights,
        )

    def popular(self, rng: random.Random) -> int:
        """A product index drawn by global (Zipf) popularity."""
        return rng.choices(range(len(self.products)), cum_weights=self.cum_weights)[0]

    def popular_in(self, rng: random.Random, category: str) -> int:
        """A product index of ``category`` drawn by popularity within it."""
        indices = self.by_category[category]
        return rng.choices(indices, cum_weights=self.category_cum_weights[category])[0]
