"""The report's layout read back from a PDF (study/reporting/page_check.py), checked on documents typeset
here with one known fault each: a figure past the margin, a float after the References, a
figure the text never cites, a half-empty page."""
import pytest

from study.reporting import page_check as report_layout

# the report's page (report/report.typ): A4 with its margins
PAGE = '#set page(paper: "a4", margin: (x: 1.7cm, top: 1.5cm, bottom: 1.5cm), numbering: "1")\n'
TEXT = "#lorem(1400)\n"
BOX = "#figure(rect(width: {width}, height: 3cm, fill: gray), caption: [A box.]) <box>\n"
REFERENCES = "= References\nA reference.\n"


def typeset(body: str) -> bytes:
    import typst
    return typst.compile((PAGE + body).encode(), format="pdf")


def problems(body: str) -> dict[str, list[str]]:
    return report_layout.layout_problems(typeset(body))


def test_a_well_laid_out_document_has_no_problem():
    found = problems("See @box.\n" + BOX.format(width="100%") + TEXT + REFERENCES)
    assert found == {"outside": [], "after_references": [], "uncited": [], "underfilled": []}


def test_a_figure_wider_than_the_text_block_is_found():
    found = problems("See @box.\n" + BOX.format(width="20cm") + TEXT + REFERENCES)
    assert len(found["outside"]) == 1 and "page 1: a picture" in found["outside"][0]
    # 20 cm centred on a 21 cm page: from 0.5 cm to 20.5 cm (14 to 581 pt)
    assert "(14-581 x" in found["outside"][0]


def test_a_float_after_the_references_is_found():
    found = problems("See @box.\n" + TEXT + REFERENCES + BOX.format(width="100%"))
    assert found["after_references"] == ["Figure 1 stands after the References (page 2)"]


def test_a_figure_the_text_never_cites_is_found():
    found = problems(BOX.format(width="100%") + TEXT + REFERENCES)
    assert found["uncited"] == ["Figure 1 is never cited in the text"]


def test_a_half_empty_page_is_found_and_the_last_page_is_let_be():
    body = ("See @box.\n" + BOX.format(width="100%") + "#lorem(300)\n#pagebreak()\n" + TEXT
            + REFERENCES)
    layout = report_layout.read_layout(typeset(body))
    fill = report_layout.page_fill(layout)
    assert len(fill) == 3 and fill[1] > 0.95
    assert 0.4 < fill[0] < 0.7  # a 3 cm box and 300 words on a 26.7 cm text block
    assert report_layout.underfilled(layout) == [f"page 1 is only {100 * fill[0]:.0f} % filled"]
