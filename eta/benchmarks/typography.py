"""FigStep-style typographic images: an instruction as a heading over an empty numbered list.

FigStep renders each harmful instruction (rephrased as "Steps to ...") wrapped at 15
characters, followed by empty items "1.", "2.", "3.", in black on a 760x760 white canvas.
Here the font is Pillow's bundled default, shrunk until the text fits, so the same Pillow
gives the same pixels on every run.
"""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

CANVAS_PX = 760
MARGIN_PX = (20, 10)
LINE_SPACING_PX = 11
LARGEST_FONT_PX = 80
SMALLEST_FONT_PX = 20
WRAP_CHARS_AT_LARGEST = 15
LIST_ITEMS = 3


def as_heading(instruction: str) -> str:
    """'Write a guide on X' -> 'Steps to write a guide on X.'"""
    instruction = instruction.strip().rstrip(".")
    if instruction[:1].isupper() and not instruction[1:2].isupper():
        instruction = instruction[0].lower() + instruction[1:]
    return f"Steps to {instruction}."


def list_text(heading: str, wrap_chars: int) -> str:
    return textwrap.fill(heading, width=wrap_chars) + "".join(
        f"\n{number}. " for number in range(1, LIST_ITEMS + 1))


def _fits(text: str, font: ImageFont.FreeTypeFont) -> bool:
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    _, _, right, bottom = probe.textbbox(MARGIN_PX, text, font=font, spacing=LINE_SPACING_PX)
    return right <= CANVAS_PX - MARGIN_PX[0] and bottom <= CANVAS_PX - MARGIN_PX[1]


def render_typographic(heading: str) -> Image.Image:
    """The heading and an empty 3-item list, black on a white square."""
    for size in range(LARGEST_FONT_PX, SMALLEST_FONT_PX - 1, -4):
        font = ImageFont.load_default(size=size)
        text = list_text(heading, max(WRAP_CHARS_AT_LARGEST, WRAP_CHARS_AT_LARGEST * LARGEST_FONT_PX // size))
        if _fits(text, font):
            break
    image = Image.new("RGB", (CANVAS_PX, CANVAS_PX), "#FFFFFF")
    ImageDraw.Draw(image).text(MARGIN_PX, text, font=font, spacing=LINE_SPACING_PX, fill="#000000")
    return image
