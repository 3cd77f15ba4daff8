"""Drawing the synthetic corpus's pages: charts, tables, photo-like scenes and UI screenshots.

A page is white and portrait: a title, a figure over most of the page, a caption and a few lines
of text. Every size is a fraction of the page, so any page size gets the same layout. The figure's
marks carry the page's colour; everything else is black, white or grey, so the colour a page shows
is the one it was drawn with, even when the page is shrunk to a few dozen visual tokens.

Private: :mod:`qwen3_vl_rag.testing.synthetic` decides what each page says and calls
:func:`draw_page`.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

WHITE: RGB = (255, 255, 255)
INK: RGB = (33, 33, 33)
MUTED: RGB = (100, 100, 100)
RULE: RGB = (200, 200, 200)
GRID: RGB = (228, 228, 228)


@dataclass(frozen=True)
class Figure:
    """What a page's figure shows; the page's text is written from the same values.

    Attributes:
        kind: A page kind of :mod:`qwen3_vl_rag.testing.synthetic` (``"bar_chart"``...).
        subject: A scene for a photo, a screen name for a screenshot; unused otherwise.
        labels: Bar, point or slice labels; table row names; form field names.
        values: One per label for charts (pie: shares summing to 1); for a table, the cells row
            by row, ``len(columns) - 1`` per row.
        columns: A table's column headers; empty otherwise.
    """

    kind: str
    subject: str = ""
    labels: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    columns: tuple[str, ...] = ()


def mix(colour: RGB, other: RGB, amount: float) -> RGB:
    """``colour`` moved ``amount`` (0..1) of the way towards ``other``."""
    r, g, b = (round(c + (o - c) * amount) for c, o in zip(colour, other, strict=True))
    return (r, g, b)


def _on(colour: RGB) -> RGB:
    """Text colour readable on a fill of ``colour`` (dark on yellow, white on the rest)."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return INK if luma > 165 else WHITE


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Font:
    # Pillow's bundled font, never a system one: the same letters wherever the same Pillow runs
    return ImageFont.load_default(size=max(6, size))


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, width: float) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(_fit_text(draw, word, font, width))
    return lines


def draw_page(
    size: tuple[int, int],
    colour: RGB,
    figure: Figure,
    *,
    title: str,
    caption: str,
    text: str,
    rng: random.Random,
    noise: np.random.RandomState,
) -> Image.Image:
    """One page: title, figure, caption and text, laid out with a little random jitter."""
    width, height = size
    page = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(page)
    margin = round(width * 0.07)
    title_font = _font(round(height * 0.045))
    small_font = _font(round(height * 0.031))
    line_height = round(height * 0.031 * 1.25)

    draw.text(
        (margin, round(height * 0.035)),
        _fit_text(draw, title, title_font, width - 2 * margin),
        font=title_font,
        fill=INK,
    )
    jitter_x = round(width * 0.015)
    box = (
        margin + rng.randint(-jitter_x, jitter_x),
        round(height * rng.uniform(0.11, 0.13)),
        width - margin + rng.randint(-jitter_x, jitter_x),
        round(height * rng.uniform(0.71, 0.75)),
    )
    _FIGURES[figure.kind](page, box, colour, figure, rng, noise)

    y = box[3] + round(height * 0.025)
    for line in _wrap(draw, caption, small_font, width - 2 * margin)[:2]:
        draw.text((margin, y), line, font=small_font, fill=MUTED)
        y += line_height
    y += round(line_height * 0.4)
    for line in _wrap(draw, text, small_font, width - 2 * margin):
        if y + line_height > height - margin // 2:
            break
        draw.text((margin, y), line, font=small_font, fill=INK)
        y += line_height
    return page


def _plot_area(box: Box, label_size: int) -> Box:
    """The part of a chart's box inside its axes (room left for values, below for labels)."""
    x0, y0, x1, y1 = box
    return (x0 + round((x1 - x0) * 0.13), y0 + label_size, x1 - 2, y1 - round(label_size * 1.8))


def _axes(
    draw: ImageDraw.ImageDraw, plot: Box, top_value: float, font: Font, ticks: int = 4
) -> None:
    x0, y0, x1, y1 = plot
    for tick in range(ticks + 1):
        y = y1 - (y1 - y0) * tick / ticks
        if tick:
            draw.line([x0, y, x1, y], fill=GRID, width=1)
        label = f"{top_value * tick / ticks:.0f}"
        draw.text((x0 - 4, y), label, font=font, fill=MUTED, anchor="rm")
    draw.line([x0, y0, x0, y1, x1, y1], fill=MUTED, width=1)


def _top(values: tuple[float, ...]) -> float:
    """A round axis maximum above the largest value."""
    peak = max(values)
    step = 10 ** math.floor(math.log10(peak)) if peak > 0 else 1.0
    return math.ceil(peak / step * 1.1) * step


def _bar_chart(
    page: Image.Image,
    box: Box,
    colour: RGB,
    figure: Figure,
    rng: random.Random,
    noise: np.random.RandomState,
) -> None:
    draw = ImageDraw.Draw(page)
    label_size = round(page.height * 0.026)
    font = _font(label_size)
    plot = _plot_area(box, label_size)
    x0, y0, x1, y1 = plot
    top = _top(figure.values)
    _axes(draw, plot, top, font)
    slot = (x1 - x0) / len(figure.values)
    bar = slot * rng.uniform(0.55, 0.75)
    for i, (label, value) in enumerate(zip(figure.labels, figure.values, strict=True)):
        centre = x0 + slot * (i + 0.5)
        draw.rectangle(
            [centre - bar / 2, y1 - (y1 - y0) * value / top, centre + bar / 2, y1], fill=colour
        )
        draw.text((centre, y1 + 3), label, font=font, fill=MUTED, anchor="mt")


def _line_chart(
    page: Image.Image,
    box: Box,
    colour: RGB,
    figure: Figure,
    rng: random.Random,
    noise: np.random.RandomState,
) -> None:
    draw = ImageDraw.Draw(page)
    label_size = round(page.height * 0.026)
    font = _font(label_size)
    plot = _plot_area(box, label_size)
    x0, y0, x1, y1 = plot
    top = _top(figure.values)
    step = (x1 - x0) / (len(figure.values) - 1)
    points = [
        (x0 + step * i, y1 - (y1 - y0) * value / top) for i, value in enumerate(figure.values)
    ]
    # a shaded area under the line keeps the colour visible when the page is seen small
    draw.polygon([(x0, y1), *points, (x1, y1)], fill=mix(colour, WHITE, rng.uniform(0.3, 0.4)))
    _axes(draw, plot, top, font)
    line_width = max(2, round(page.width / 60))
    draw.line(points, fill=colour, width=line_width, joint="curve")
    radius = line_width * 1.2
    for (x, y), label in zip(points, figure.labels, strict=True):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=WHITE)
        draw.text((x, y1 + 3), label, font=font, fill=MUTED, anchor="mt")


def _pie_chart(
    page: Image.Image,
    box: Box,
    colour: RGB,
    figure: Figure,
    rng: random.Random,
    noise: np.random.RandomState,
) -> None:
    draw = ImageDraw.Draw(page)
    font = _font(round(page.height * 0.028))
    x0, y0, x1, y1 = box
    diameter = min((x1 - x0) * 0.62, (y1 - y0) * 0.9)
    cx, cy = x0 + diameter / 2 + 2, (y0 + y1) / 2
    pie = [cx - diameter / 2, cy - diameter / 2, cx + diameter / 2, cy + diameter / 2]
    start = rng.uniform(-90, 0)
    count = len(figure.values)
    legend_x = cx + diameter / 2 + (x1 - x0) * 0.05
    swatch = round(page.height * 0.028)
    for i, (label, share) in enumerate(zip(figure.labels, figure.values, strict=True)):
        # shades of one colour, from dark to light, so the page's colour is the pie's
        shade = mix(colour, (0, 0, 0), 0.3) if i == 0 else mix(colour, WHITE, 0.55 * i / count)
        end = start + 360 * share
        draw.pieslice(pie, start, end, fill=shade, outline=WHITE, width=2)
        start = end
        y = cy + (i - count / 2) * swatch * 1.7
        draw.rectangle([legend_x, y, legend_x + swatch, y + swatch], fill=shade)
        draw.text(
            (legend_x + swatch * 1.4, y + swatch / 2),
            _fit_text(draw, f"{label} {share:.0%}", font, x1 - legend_x - swatch * 1.4),
            font=font,
            fill=INK,
            anchor="lm",
        )


def _table(
    page: Image.Image,
    box: Box,
    colour: RGB,
    figure: Figure,
    rng: random.Random,
    noise: np.random.RandomState,
) -> None:
    draw = ImageDraw.Draw(page)
    font = _font(round(page.height * 0.028))
    x0, y0, x1, y1 = box
    rows = len(figure.labels)
    row = (y1 - y0) / (rows + 1.6)
    header = row * 1.6
    first = (x1 - x0) * 0.34
    other = (x1 - x0 - first) / (len(figure.columns) - 1)
    draw.rectangle([x0, y0, x1, y0 + header], fill=colour)
    stripe = mix(colour, WHITE, 0.82)
    cells = len(figure.columns) - 1
    for r, name in enumerate(figure.labels):
        top = y0 + header + row * r
        if r % 2:
            draw.rectangle([x0, top, x1, top + row], fill=stripe)
        draw.line([x0, top + row, x1, top + row], fill=RULE, width=1)
        middle = top + row / 2
        draw.text((x0 + 4, middle), name, font=font, fill=INK, anchor="lm")
        for c in range(cells):
            value = figure.values[r * cells + c]
            right = x0 + first + other * (c + 1) - 4
            text = f"{value:+.0f}%" if figure.columns[c + 1] == "Change" else f"{value:,.0f}"
            draw.text((right, middle), text, font=font, fill=INK, anchor="rm")
    for c, name in enumerate(figure.columns):
        if c == 0:
            draw.text((x0 + 4, y0 + header / 2), name, font=font, fill=_on(colour), anchor="lm")
        else:
            right = x0 + first + other * c - 4
            draw.text((right, y0 + header / 2), name, font=font, fill=_on(colour), anchor="rm")
    draw.rectangle([x0, y0, x1, y0 + header + row * rows], outline=RULE, width=1)


def _screenshot(
    page: Image.Image,
    box: Box,
    colour: RGB,
    figure: Figure,
    rng: random.Random,
    noise: np.random.RandomState,
) -> None:
    draw = ImageDraw.Draw(page)
    font = _font(round(page.height * 0.028))
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    bar = y0 + round(height * rng.uniform(0.13, 0.16))
    side = x0 + round(width * rng.uniform(0.25, 0.3))
    draw.rectangle(box, fill=(248, 248, 250), outline=RULE, width=1)
    draw.rectangle([x0, y0, x1, bar], fill=colour)
    screen = figure.subject.capitalize()
    draw.text(
        (x0 + 8, (y0 + bar) / 2), f"Acme  >  {screen}", font=font, fill=_on(colour), anchor="lm"
    )
    draw.rectangle([x0, bar, side, y1], fill=(232, 233, 236))
    item = height * 0.085
    for i, name in enumerate(("Home", "Reports", screen, "Help")):
        top = bar + item * (0.5 + i)
        if name == screen:
            draw.rectangle([x0, top, side, top + item], fill=mix(colour, WHITE, 0.3))
        ink = _on(mix(colour, WHITE, 0.3)) if name == screen else INK
        text = _fit_text(draw, name, font, side - x0 - 10)
        draw.text((x0 + 6, top + item / 2), text, font=font, fill=ink, anchor="lm")
    left, right = side + round(width * 0.06), x1 - round(width * 0.06)
    field = height * 0.085
    label = page.height * 0.028 * 1.35
    y = bar + height * 0.05
    for name in figure.labels:
        draw.text((left, y), name, font=font, fill=MUTED)
        y += label
        draw.rounded_rectangle([left, y, right, y + field], radius=3, fill=WHITE, outline=RULE)
        y += field + height * 0.05
    button_w, button_h = width * 0.22, height * 0.1
    top = min(y + height * 0.02, y1 - button_h - height * 0.04)
    draw.rounded_rectangle([right - button_w, top, right, top + button_h], radius=4, fill=colour)
    draw.text(
        (right - button_w / 2, top + button_h / 2), "Save", font=font, fill=_on(colour), anchor="mm"
    )
    cancel = right - button_w * 2.15
    draw.rounded_rectangle(
        [cancel, top, cancel + button_w, top + button_h], radius=4, fill=WHITE, outline=RULE
    )
    draw.text(
        (cancel + button_w / 2, top + button_h / 2), "Cancel", font=font, fill=INK, anchor="mm"
    )


def _photo(
    page: Image.Image,
    box: Box,
    colour: RGB,
    figure: Figure,
    rng: random.Random,
    noise: np.random.RandomState,
) -> None:
    x0, y0, x1, y1 = box
    size = (x1 - x0, y1 - y0)
    scene = _SCENES[figure.subject](size, rng)
    scene = scene.filter(ImageFilter.GaussianBlur(max(0.6, size[0] / 320)))
    grain = noise.normal(0.0, 5.0, (size[1], size[0]))
    scene = Image.fromarray(np.clip(np.asarray(scene, np.float64) + grain, 0, 255).astype(np.uint8))
    # a duotone of the page's colour: the scene's light and shade, tinted all over
    tinted = ImageOps.colorize(
        scene, black=mix(colour, (0, 0, 0), 0.62), white=mix(colour, WHITE, 0.85), mid=colour
    )
    page.paste(tinted, (x0, y0))


def _sky(size: tuple[int, int], top: float, bottom: float) -> Image.Image:
    """A grey-level image with a vertical gradient from ``top`` to ``bottom`` (0..255)."""
    ramp = np.linspace(top, bottom, size[1], dtype=np.float64)[:, None]
    return Image.fromarray(np.broadcast_to(ramp, (size[1], size[0])).astype(np.uint8))


def _sunset(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    horizon = round(h * rng.uniform(0.55, 0.68))
    scene = _sky(size, 105, 240)
    draw = ImageDraw.Draw(scene)
    sun_x, radius = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.1, 0.14)
    draw.ellipse([sun_x - radius, horizon - radius, sun_x + radius, horizon + radius], fill=252)
    draw.rectangle([0, horizon, w, h], fill=70)
    for i in range(6):  # the sun's reflection on the water
        y = horizon + (h - horizon) * (i + 1) / 8
        half = radius * (1 - i / 8) * rng.uniform(0.6, 1.0)
        draw.line([sun_x - half, y, sun_x + half, y], fill=210, width=max(1, h // 90))
    return scene


def _forest(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    horizon = round(h * rng.uniform(0.55, 0.65))
    scene = _sky(size, 200, 245)
    draw = ImageDraw.Draw(scene)
    draw.rectangle([0, horizon, w, h], fill=45)
    for row, shade in enumerate((95, 60, 30)):  # far rows lighter, as through haze
        for _ in range(rng.randint(7, 11)):
            x = rng.uniform(-0.05, 1.05) * w
            base = horizon + h * (0.05 + 0.12 * row) * rng.uniform(0.6, 1.0)
            tall = h * rng.uniform(0.28, 0.45)
            half = tall * 0.24
            draw.polygon([(x, base - tall), (x - half, base), (x + half, base)], fill=shade)
    return scene


def _sea(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    horizon = round(h * rng.uniform(0.4, 0.55))
    scene = _sky(size, 175, 238)
    water = _sky((w, h - horizon), 130, 55)
    scene.paste(water, (0, horizon))
    draw = ImageDraw.Draw(scene)
    for _ in range(rng.randint(14, 20)):
        x, y = rng.uniform(0, w), rng.uniform(horizon + 4, h)
        half = w * rng.uniform(0.03, 0.08)
        draw.arc([x - half, y - half / 3, x + half, y + half / 3], 200, 340, fill=185, width=2)
    boat_x, boat_y = w * rng.uniform(0.2, 0.8), horizon + (h - horizon) * 0.3
    sail = h * 0.14
    draw.polygon(
        [(boat_x, boat_y - sail), (boat_x, boat_y), (boat_x + sail * 0.6, boat_y)], fill=248
    )
    draw.polygon(
        [
            (boat_x - sail * 0.4, boat_y),
            (boat_x + sail * 0.8, boat_y),
            (boat_x + sail * 0.6, boat_y + sail * 0.2),
            (boat_x - sail * 0.25, boat_y + sail * 0.2),
        ],
        fill=25,
    )
    return scene


def _night_city(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    scene = _sky(size, 25, 85)
    draw = ImageDraw.Draw(scene)
    moon_x, moon_y, radius = w * rng.uniform(0.15, 0.85), h * 0.18, h * 0.06
    draw.ellipse([moon_x - radius, moon_y - radius, moon_x + radius, moon_y + radius], fill=240)
    x = -rng.uniform(0, w * 0.05)
    while x < w:
        wide = w * rng.uniform(0.09, 0.17)
        top = h * rng.uniform(0.35, 0.7)
        draw.rectangle([x, top, x + wide - 2, h], fill=rng.randint(8, 30))
        window = max(2.0, w / 70)
        for wy in np.arange(top + window, h - window, window * 2.2):
            for wx in np.arange(x + window, x + wide - window * 2, window * 2):
                if rng.random() < 0.4:
                    draw.rectangle(
                        [wx, wy, wx + window - 1, wy + window - 1], fill=rng.randint(190, 245)
                    )
        x += wide
    return scene


def _snowy_mountain(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    scene = _sky(size, 150, 232)
    draw = ImageDraw.Draw(scene)
    base = h * rng.uniform(0.7, 0.8)
    for shade in (120, 85):  # a far range, then a near one
        peak_x = w * rng.uniform(0.2, 0.8)
        peak_y = h * rng.uniform(0.12, 0.35)
        left, right = peak_x - w * rng.uniform(0.45, 0.7), peak_x + w * rng.uniform(0.45, 0.7)
        draw.polygon([(left, base), (peak_x, peak_y), (right, base)], fill=shade)
        cap = 0.3  # the top third of the slope is snow
        snow_y = peak_y + (base - peak_y) * cap
        draw.polygon(
            [
                (peak_x + (left - peak_x) * cap, snow_y),
                (peak_x, peak_y),
                (peak_x + (right - peak_x) * cap, snow_y),
                (peak_x + (right - peak_x) * cap * 0.4, snow_y - h * 0.03),
                (peak_x, snow_y + h * 0.02),
                (peak_x + (left - peak_x) * cap * 0.5, snow_y - h * 0.025),
            ],
            fill=250,
        )
    draw.rectangle([0, base, w, h], fill=225)
    return scene


def _desert(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    scene = _sky(size, 195, 245)
    draw = ImageDraw.Draw(scene)
    sun_x, radius = w * rng.uniform(0.15, 0.85), h * 0.07
    draw.ellipse([sun_x - radius, h * 0.2 - radius, sun_x + radius, h * 0.2 + radius], fill=253)
    for level, shade in ((0.5, 160), (0.65, 125), (0.8, 95)):
        phase, waves = rng.uniform(0, math.tau), rng.uniform(1.0, 2.2)
        ridge = [
            (x, h * level + h * 0.06 * math.sin(phase + waves * math.tau * x / w))
            for x in np.linspace(0, w, 24)
        ]
        draw.polygon([(0, h), *ridge, (w, h)], fill=shade)
    return scene


SCENE_NAMES = ("sunset", "forest", "sea", "night city", "snowy mountain", "desert")
_SCENES = {
    "sunset": _sunset,
    "forest": _forest,
    "sea": _sea,
    "night city": _night_city,
    "snowy mountain": _snowy_mountain,
    "desert": _desert,
}
_FIGURES = {
    "bar_chart": _bar_chart,
    "line_chart": _line_chart,
    "pie_chart": _pie_chart,
    "table": _table,
    "photo": _photo,
    "screenshot": _screenshot,
}
