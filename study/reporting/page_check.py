"""What a typeset report looks like on the page, read back from its PDF: where its figures and
tables lie, whether the text cites each of them, and how full each page is.

make_report.py checks every report it writes with `layout_problems`; the tests check the
checker on PDFs with known faults. Positions are in PDF points (1/72 in) from the page's top.
"""
import re
from collections import Counter
from dataclasses import dataclass

# The template's page: A4 with these margins (report/report.typ sets the same).
MARGIN_X_PT, MARGIN_TOP_PT, MARGIN_BOTTOM_PT = 1.7 / 2.54 * 72, 1.5 / 2.54 * 72, 1.5 / 2.54 * 72
TOLERANCE_PT = 1.5  # a picture's anti-aliased edge
TEXT_TOLERANCE_PT = 6.0  # a text line's box: glyph ascenders, side bearings and the
# punctuation that justified text hangs into the margin
FILLED = 0.85  # a page other than the last is full when this share of its height holds content
GAP_PT = 14.0  # blank bands up to this tall count as filled (paragraph and float spacing)
CAPTION = re.compile(r"^(Figure|Table)\s(\d+):")  # Typst joins them with a no-break space


@dataclass(frozen=True)
class Box:
    """Something drawn on a page: its page (from 0), its bounds, and its text ('' for a picture
    or a line)."""
    page: int
    x0: float
    y0: float
    x1: float
    y1: float
    text: str = ""


@dataclass
class PageLayout:
    """A typeset document as boxes: text lines, pictures (raster and vector) per page."""
    width: float
    height: float
    pages: int
    lines: list[Box]
    pictures: list[Box]

    @property
    def block(self) -> tuple[float, float, float, float]:
        """The text block (x0, y0, x1, y1) every line and picture must lie in."""
        return (MARGIN_X_PT, MARGIN_TOP_PT, self.width - MARGIN_X_PT,
                self.height - MARGIN_BOTTOM_PT)


def read_layout(pdf: bytes) -> PageLayout:
    """Every text line (the page number in the footer left out) and every picture of a PDF."""
    import pymupdf

    document = pymupdf.open(stream=pdf, filetype="pdf")
    lines, pictures = [], []
    width = height = 0.0
    for number, page in enumerate(document):
        width, height = page.rect.width, page.rect.height
        footer = height - MARGIN_BOTTOM_PT
        for block in page.get_text("dict")["blocks"]:
            for line in block.get("lines", []):
                text = " ".join("".join(span["text"] for span in line["spans"]).split())
                x0, y0, x1, y1 = line["bbox"]
                if not text or (y0 >= footer - TOLERANCE_PT and text == str(number + 1)):
                    continue  # the page number
                lines.append(Box(number, x0, y0, x1, y1, text))
        for info in page.get_image_info():
            pictures.append(Box(number, *info["bbox"]))
        for drawing in page.get_drawings():
            rect = drawing["rect"]
            if rect.width > 0.5 or rect.height > 0.5:  # hairline dots are no content
                pictures.append(Box(number, rect.x0, rect.y0, rect.x1, rect.y1))
    return PageLayout(width, height, len(document), lines, pictures)


def captions(layout: PageLayout) -> list[tuple[str, Box]]:
    """('Figure 3', its caption's first line) for each figure and table caption."""
    found = []
    for line in layout.lines:
        match = CAPTION.match(line.text)
        if match:
            found.append((f"{match.group(1)} {match.group(2)}", line))
    return found


def outside_block(layout: PageLayout) -> list[str]:
    """Lines and pictures that reach past the text block (a figure past the margin)."""
    x0, y0, x1, y1 = layout.block
    problems = []
    for box in layout.lines + layout.pictures:
        slack = TEXT_TOLERANCE_PT if box.text else TOLERANCE_PT
        if (box.x0 < x0 - slack or box.x1 > x1 + slack
                or box.y0 < y0 - slack or box.y1 > y1 + slack):
            what = f"text '{box.text[:40]}'" if box.text else "a picture"
            problems.append(f"page {box.page + 1}: {what} reaches past the text block "
                            f"({box.x0:.0f}-{box.x1:.0f} x {box.y0:.0f}-{box.y1:.0f} pt)")
    return problems


def after_references(layout: PageLayout) -> list[str]:
    """Figures and tables placed after the References heading."""
    heading = next((line for line in layout.lines if line.text.endswith("References")
                    and len(line.text) <= len("99. References")), None)
    if heading is None:
        return ["no References heading"]
    return [f"{name} stands after the References (page {box.page + 1})"
            for name, box in captions(layout) if (box.page, box.y0) > (heading.page, heading.y0)]


def uncited(layout: PageLayout) -> list[str]:
    """Figures and tables the text never names outside their own caption."""
    text = " ".join(line.text for line in layout.lines)
    captioned = Counter(name for name, _ in captions(layout))
    return [f"{name} is never cited in the text" for name, count in captioned.items()
            if len(re.findall(rf"\b{name}\b(?!\d)", text)) <= count]


def page_fill(layout: PageLayout) -> list[float]:
    """Per page, the share of the text block's height that holds content, blank bands shorter
    than GAP_PT counted as filled (the space between paragraphs and around floats)."""
    _, top, _, bottom = layout.block
    shares = []
    for page in range(layout.pages):
        spans = sorted((max(b.y0, top), min(b.y1, bottom)) for b in layout.lines + layout.pictures
                       if b.page == page and b.y1 > top and b.y0 < bottom)
        covered, start, end = 0.0, None, None
        for y0, y1 in spans:
            if start is None:
                start, end = y0, y1
            elif y0 - end <= GAP_PT:
                end = max(end, y1)
            else:
                covered += end - start
                start, end = y0, y1
        if start is not None:
            covered += end - start
            if start - top <= GAP_PT:  # content starting at the top counts from the top
                covered += start - top
        shares.append(covered / (bottom - top))
    return shares


def underfilled(layout: PageLayout, filled: float = FILLED) -> list[str]:
    """Pages other than the last with less than `filled` of their height used."""
    return [f"page {page + 1} is only {100 * share:.0f} % filled"
            for page, share in enumerate(page_fill(layout)[:-1]) if share < filled]


def layout_problems(pdf: bytes) -> dict[str, list[str]]:
    """Each kind of layout fault of a typeset report, with the places it occurs."""
    layout = read_layout(pdf)
    return {"outside": outside_block(layout), "after_references": after_references(layout),
            "uncited": uncited(layout), "underfilled": underfilled(layout)}
