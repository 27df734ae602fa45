"""`nagner predict --format html` writes a self-contained page that a real browser draws with every
entity marked: nested boxes inside their outer box, both fragments of a discontinuous entity.

Opened in headless Chromium (Debian's package; `.ci/run` installs it); skipped, saying why, where no
browser is installed. A script appended to a copy of the page measures each mark's box after layout
and writes the result into the DOM, which `--dump-dom` returns.
"""

import json
import re
import shutil
import subprocess

import pytest

from nagner.cli import main
from nagner.data.example import Entity
from nagner.modeling.predictor import NagNerPredictor

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
TEXTS = ["The University of Paris hired Ann Lee.", "I had pain in my left knee and right ankle."]
# Words: The University of Paris hired Ann Lee .  /  I had pain in my left knee and right ankle .
PREDICTED = {
    1: [Entity("ORG", (1, 2, 3), 0.9), Entity("LOC", (3,), 0.8), Entity("PER", (5, 6), 0.95)],
    2: [Entity("ADR", (2, 3, 4, 5, 6), 0.7), Entity("ADR", (2, 3, 4, 8, 9), 0.6)],
}
MEASURE = """<script>
const marks = [...document.querySelectorAll('.nagner-entity')].map(e => {
  const r = e.getBoundingClientRect();
  return {entity: e.dataset.entity, type: e.dataset.type, depth: +e.dataset.depth, text: e.textContent,
          x: r.x, y: r.y, w: r.width, h: r.height, record: [...document.querySelectorAll('.nagner-record')]
          .indexOf(e.closest('.nagner-record'))};
});
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify(marks);
document.body.appendChild(out);
</script>"""


@pytest.fixture()
def page(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(
        NagNerPredictor, "predict_sentences", lambda self, sentences, **kw: [PREDICTED[s.line] for s in sentences]
    )
    out = tmp_path / "page.html"
    assert main(["predict", "-m", str(tiny_model_dir), "--format", "html", "--output", str(out), *TEXTS]) == 0
    capsys.readouterr()
    return out.read_text(encoding="utf-8")


def test_page_is_self_contained_and_escaped(page):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=|<script|<link""", page)  # nothing loaded from elsewhere
    assert page.count('class="nagner-record"') == 2
    assert "ORG" in page and "ADR#2" in page and "ADR#1" not in page  # only split entities get a number


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (.ci/run installs Debian's chromium)")
def test_a_real_browser_draws_every_entity(page, tmp_path):
    copy = tmp_path / "measured.html"
    copy.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the browser did not run the measuring script"
    marks = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert all(m["w"] > 0 and m["h"] > 0 for m in marks)  # every mark is drawn

    def boxes(record, entity):
        return [m for m in marks if m["record"] == record and m["entity"] == str(entity)]

    org, loc, per = boxes(0, 1), boxes(0, 2), boxes(0, 3)
    assert [m["text"].startswith("University of Paris") for m in org] == [True]
    assert [m["type"] for m in loc] == ["LOC"] and loc[0]["depth"] == 1 and per[0]["depth"] == 0
    o, inner = org[0], loc[0]  # the nested LOC box lies inside the ORG box
    assert o["x"] <= inner["x"] and inner["x"] + inner["w"] <= o["x"] + o["w"]
    assert o["y"] <= inner["y"] and inner["y"] + inner["h"] <= o["y"] + o["h"]
    whole, split = boxes(1, 1), boxes(1, 2)  # "pain in my left knee" and "pain in my … right ankle"
    assert len(whole) == 1 and whole[0]["text"] == "pain in myADR#2 left kneeADR"  # labels follow their text
    assert len(split) == 2 and split[0]["text"].startswith("pain in my") and split[1]["text"].startswith("right ankle")
    assert split[0]["depth"] == 1  # its first fragment is drawn inside the contiguous entity's box
    assert "ADR#2" in split[0]["text"]  # fragments that belong together carry one numbered label
