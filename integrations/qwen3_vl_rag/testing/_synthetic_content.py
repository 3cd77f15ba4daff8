"""What the synthetic corpus's pages say: their figures' data, titles, captions and text.

Charts and tables measure a business quantity (revenue, headcount...) along a dimension
(quarters, regions...); photos show a scene; screenshots show a screen of a web app. The page's
text quotes the figure's own numbers. Private: :mod:`qwen3_vl_rag.testing.synthetic` calls
:func:`write_content` for a page and :func:`subject_words` for a query.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from qwen3_vl_rag.testing._synthetic_drawing import SCENE_NAMES, Figure


@dataclass(frozen=True)
class PageContent:
    """A page's figure and words."""

    figure: Figure
    title: str
    caption: str
    text: str


# (subject, unit, low, high): what a chart or table measures, and its range of values.
_MEASURES = (
    ("revenue", "EUR m", 20, 120),
    ("costs", "EUR m", 10, 90),
    ("headcount", "people", 40, 400),
    ("sales", "thousand units", 5, 60),
    ("profit", "EUR m", 2, 30),
    ("customers", "thousand", 10, 150),
    ("energy use", "MWh", 100, 900),
    ("website visitors", "thousand", 20, 300),
)
# (dimension, adjective or "", its labels)
_DIMENSIONS = {
    "quarter": ("quarterly", ("Q1", "Q2", "Q3", "Q4")),
    "month": ("monthly", ("Jan", "Feb", "Mar", "Apr", "May", "Jun")),
    "year": ("yearly", ("2021", "2022", "2023", "2024", "2025")),
    "region": ("", ("North", "South", "East", "West", "Central")),
    "product": ("", ("Basic", "Plus", "Pro", "Team", "Enterprise")),
    "channel": ("", ("Online", "Retail", "Partners", "Direct")),
}
_DIMENSIONS_OF = {
    "bar_chart": ("quarter", "region", "year", "month"),
    "line_chart": ("month", "year", "quarter"),
    "pie_chart": ("region", "product", "channel"),
    "table": ("region", "product"),
}
_SCREENS = {
    "settings": ("Language", "Time zone", "Theme"),
    "billing": ("Plan", "Seats", "Card number"),
    "login": ("Email", "Password"),
    "profile": ("Name", "Email", "Phone"),
    "checkout": ("Address", "City", "Card number"),
    "notifications": ("Email alerts", "Daily digest", "Quiet hours"),
}
_REPORT_LINES = (
    "The figures are unaudited and rounded.",
    "Management expects a similar trend next year.",
    "Seasonal effects explain most of the variation.",
    "See the appendix for the method and the sources.",
    "All amounts are stated before tax.",
)
_TRAVEL_LINES = (
    "The light changed quickly as the clouds moved in.",
    "It was quiet apart from the wind.",
    "We stayed until the colours faded.",
    "The path back took about an hour.",
)


def _series(rng: random.Random, low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` values that wander between ``low`` and ``high``, like a real series."""
    value = rng.uniform(low, high)
    values = []
    for _ in range(count):
        value = min(high, max(low, value + rng.uniform(-0.3, 0.3) * (high - low)))
        values.append(round(value, 1))
    return tuple(values)


def _chart(rng: random.Random, kind: str) -> PageContent:
    measure, unit, low, high = rng.choice(_MEASURES)
    dimension = rng.choice(_DIMENSIONS_OF[kind])
    adjective, labels = _DIMENSIONS[dimension]
    values = _series(rng, low, high, len(labels))
    peak, least = values.index(max(values)), values.index(min(values))
    number = rng.randint(1, 12)
    if kind == "line_chart":
        title = f"{adjective.capitalize()} {measure}"
        caption = f"Figure {number}. {measure.capitalize()} per {dimension}, in {unit}."
    else:
        title = f"{measure.capitalize()} by {dimension}"
        caption = f"Figure {number}. {measure.capitalize()} by {dimension}, in {unit}."
    text = (
        f"{measure.capitalize()} peaked in {labels[peak]} at {values[peak]:g} {unit}; the lowest "
        f"was {values[least]:g} in {labels[least]}. {rng.choice(_REPORT_LINES)}"
    )
    return PageContent(Figure(kind, measure, labels, values), title, caption, text)


def _bar_chart(rng: random.Random) -> PageContent:
    return _chart(rng, "bar_chart")


def _line_chart(rng: random.Random) -> PageContent:
    return _chart(rng, "line_chart")


def _pie_chart(rng: random.Random) -> PageContent:
    measure = rng.choice(_MEASURES)[0]
    dimension = rng.choice(_DIMENSIONS_OF["pie_chart"])
    labels = _DIMENSIONS[dimension][1][: rng.randint(3, 5)]
    weights = sorted((rng.uniform(1, 10) for _ in labels), reverse=True)
    shares = tuple(weight / sum(weights) for weight in weights)
    title = f"Share of {measure} by {dimension}"
    caption = f"Figure {rng.randint(1, 12)}. Share of {measure} by {dimension}."
    text = (
        f"{labels[0]} had the largest share of {measure}, {shares[0]:.0%}, ahead of "
        f"{labels[1]} with {shares[1]:.0%}. {rng.choice(_REPORT_LINES)}"
    )
    return PageContent(Figure("pie_chart", measure, labels, shares), title, caption, text)


def _table(rng: random.Random) -> PageContent:
    measure, unit, low, high = rng.choice(_MEASURES)
    dimension = rng.choice(_DIMENSIONS_OF["table"])
    labels = _DIMENSIONS[dimension][1]
    values: list[float] = []
    for _ in labels:
        before = round(rng.uniform(low, high))
        after = round(before * rng.uniform(0.8, 1.3))
        values += [before, after, round(100 * (after - before) / before)]
    best = max(range(len(labels)), key=lambda row: values[row * 3 + 2])
    columns = (dimension.capitalize(), "2024", "2025", "Change")
    figure = Figure("table", measure, labels, tuple(values), columns)
    title = f"{measure.capitalize()} by {dimension}, 2024-2025"
    caption = f"Table {rng.randint(1, 9)}. {measure.capitalize()} by {dimension}, in {unit}."
    text = (
        f"The table lists {measure} by {dimension} for 2024 and 2025. {labels[best]} grew "
        f"most, by {values[best * 3 + 2]:+.0f}%. {rng.choice(_REPORT_LINES)}"
    )
    return PageContent(figure, title, caption, text)


def _photo(rng: random.Random) -> PageContent:
    scene = rng.choice(SCENE_NAMES)
    heading = rng.choice(("Field notes", "Travel diary", "Trip report", "Photo essay"))
    when = rng.choice(("at dawn", "at dusk", "in the afternoon", "after the rain"))
    title = f"{heading}: the {scene}"
    caption = f"Photo {rng.randint(1, 30)}. A {scene} {when}."
    text = f"We reached the {scene} {when}. {' '.join(rng.sample(_TRAVEL_LINES, 2))}"
    return PageContent(Figure("photo", scene), title, caption, text)


def _screenshot(rng: random.Random) -> PageContent:
    screen = rng.choice(tuple(_SCREENS))
    fields = _SCREENS[screen]
    title = f"User guide: the {screen} page"
    caption = f"Screenshot {rng.randint(1, 20)}. The {screen} page."
    text = (
        f"Open {screen.capitalize()} from the sidebar to change the {fields[0].lower()} and "
        f"the {fields[-1].lower()}. Press Save to keep your changes, or Cancel to leave them "
        "as they were."
    )
    return PageContent(Figure("screenshot", screen, fields), title, caption, text)


_WRITERS: dict[str, Callable[[random.Random], PageContent]] = {
    "bar_chart": _bar_chart,
    "line_chart": _line_chart,
    "pie_chart": _pie_chart,
    "table": _table,
    "photo": _photo,
    "screenshot": _screenshot,
}


def write_content(kind: str, rng: random.Random) -> PageContent:
    """A page of ``kind``: its figure's data and its words, drawn from ``rng``."""
    return _WRITERS[kind](rng)


def subject_words(kind: str, rng: random.Random) -> dict[str, str]:
    """Words a query about a page of ``kind`` may use: a measure, a scene, a screen."""
    measure = rng.choice(_MEASURES)[0]
    dimension = rng.choice(_DIMENSIONS_OF.get(kind, ("quarter",)))
    adjective = _DIMENSIONS[dimension][0]
    if adjective and rng.random() < 0.5:
        measured = f"{adjective} {measure}"  # "quarterly revenue"
    else:
        measured = f"{measure} by {dimension}"  # "revenue by region"
    return {
        "measure": measured,
        "scene": rng.choice(SCENE_NAMES),
        "screen": rng.choice(tuple(_SCREENS)),
    }
