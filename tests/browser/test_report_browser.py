"""The report in a real browser: Debian's headless Chromium (installed by .ci/run) loads the file
from disk, every image decodes with a non-zero size, and a screenshot is taken and is not blank.

The images are read by a test-only wrapper page (written to the test's temporary folder, never
into the report) that holds the report in an iframe, draws each image on a canvas and writes its
natural size and how many of its pixels are inked (neither transparent nor white) into its own
DOM, which ``--dump-dom`` prints: a PNG that fails to decode has a size (from its header) but no
ink. Every browser process the test starts is in its own
process group, killed when the test ends."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from analysis_cases import sst_registry
from headless import chromium
from ensemble.report import page as report

pytestmark = pytest.mark.browser
WRAPPER = """<!DOCTYPE html><html><body><iframe id="f" src="{src}" width="1200" height="900"></iframe>
<pre id="out">not loaded</pre><script>
document.getElementById("f").addEventListener("load", function () {{
  var lines = [];
  try {{
    var imgs = this.contentDocument.images;
    for (var i = 0; i < imgs.length; i++) {{
      var img = imgs[i], state = "decoded", inked = -1;
      try {{
        var c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        var ctx = c.getContext("2d");
        ctx.drawImage(img, 0, 0);
        var px = ctx.getImageData(0, 0, c.width, c.height).data;
        inked = 0;
        for (var p = 0; p < px.length; p += 4)
          if (px[p + 3] > 0 && (px[p] < 250 || px[p + 1] < 250 || px[p + 2] < 250)) inked++;
      }} catch (e) {{ state = "failed:" + e.name; }}
      lines.push("IMG " + img.parentNode.id + " " + state + " " + img.naturalWidth + " " + img.naturalHeight + " " + inked);
    }}
    lines.push("COUNT " + imgs.length);
  }} catch (e) {{ lines.push("ERROR " + e); }}
  document.getElementById("out").textContent = lines.join("\\n");
}});
</script></body></html>
"""


@pytest.fixture
def page(tmp_path) -> tuple[Path, list[str]]:
    reg, data, _ = sst_registry(tmp_path)
    out = tmp_path / "report.html"
    result = report.report(reg, data, out, "g")
    return out, [Path(p).stem for p in result["figures"]]


def images_in_chromium(tmp: Path, page: Path) -> list[tuple[str, str, int, int, int]]:
    """(figure, state, natural width, height, inked pixels) of each image of ``page``, as Chromium sees them."""
    wrapper = tmp / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=page.as_uri()))
    dom = chromium(tmp, "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", wrapper.as_uri())
    assert "COUNT " in dom, dom[-2000:]
    found = re.findall(r"IMG (\S+) (\S+) (\d+) (\d+) (-?\d+)", dom)
    assert len(found) == int(re.search(r"COUNT (\d+)", dom).group(1))
    return [(n, s, int(w), int(h), int(k)) for n, s, w, h, k in found]


def decoded(image: tuple[str, str, int, int, int]) -> bool:
    _, state, w, h, inked = image
    return state == "decoded" and w > 0 and h > 0 and inked > 0.01 * w * h


def test_every_image_decodes_in_chromium(page, tmp_path):
    out, names = page
    images = images_in_chromium(tmp_path, out)
    assert [i[0] for i in images] == names
    for image in images:
        assert decoded(image), image
        assert image[2:4] == report.png_size((out.parent / "report_files" / f"{image[0]}.png").read_bytes())


def test_a_truncated_image_is_caught(page, tmp_path):
    """The check above can fail: a PNG cut after its header keeps its size but does not decode."""
    out, names = page
    text = out.read_text()
    cut = re.sub(r"(data:image/png;base64,[A-Za-z0-9+/]{100})[A-Za-z0-9+/=]+", r"\1", text, count=1)
    broken = tmp_path / "broken.html"
    broken.write_text(cut)
    images = images_in_chromium(tmp_path, broken)
    assert [decoded(i) for i in images] == [False] + [True] * (len(names) - 1)
    assert images[0][2:4] == report.png_size((out.parent / "report_files" / f"{names[0]}.png").read_bytes())


def test_a_screenshot_of_the_page_is_not_blank(page, tmp_path):
    out, _ = page
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", "--virtual-time-budget=10000", out.as_uri())
    assert shot.is_file(), "chromium wrote no screenshot"
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (3000, 1200)
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100        # text, tables and plots, not an empty white page
