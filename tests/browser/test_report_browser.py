"""The report in a real browser: Debian's headless Chromium (installed by .ci/run) loads the file
from disk, every image decodes with a non-zero size, and a screenshot is taken and is not blank.

The images are read by a test-only wrapper page (written to the test's temporary folder, never
into the report) that holds the report in an iframe and writes each image's natural size into
its own DOM, which ``--dump-dom`` prints. Every browser process the test starts is in its own
process group, killed when the test ends."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from analysis_cases import sst_registry
from ensemble import report

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions"]
WRAPPER = """<!DOCTYPE html><html><body><iframe id="f" src="{src}" width="1200" height="900"></iframe>
<pre id="out">not loaded</pre><script>
document.getElementById("f").addEventListener("load", function () {{
  var lines = [];
  try {{
    var imgs = this.contentDocument.images;
    for (var i = 0; i < imgs.length; i++)
      lines.push("IMG " + imgs[i].parentNode.id + " " + imgs[i].complete + " " + imgs[i].naturalWidth + " "
                 + imgs[i].naturalHeight);
    lines.push("COUNT " + imgs.length);
  }} catch (e) {{ lines.push("ERROR " + e); }}
  document.getElementById("out").textContent = lines.join("\\n");
}});
</script></body></html>
"""


def chromium(tmp: Path, *args: str) -> str:
    """Run headless Chromium with its own profile; its whole process group is killed afterwards."""
    if CHROMIUM is None:
        pytest.skip("no chromium binary (Debian's `chromium` package; .ci/run installs it)")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return out


@pytest.fixture
def page(tmp_path) -> tuple[Path, list[str]]:
    reg, data, _ = sst_registry(tmp_path)
    out = tmp_path / "report.html"
    result = report.report(reg, data, out, "g")
    return out, [Path(p).stem for p in result["figures"]]


def test_every_image_decodes_in_chromium(page, tmp_path):
    out, names = page
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=out.as_uri()))
    dom = chromium(tmp_path, "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
                   wrapper.as_uri())
    assert f"COUNT {len(names)}" in dom, dom[-2000:]
    images = re.findall(r"IMG (\S+) (\w+) (\d+) (\d+)", dom)
    assert [i[0] for i in images] == names
    for name, complete, width, height in images:
        assert complete == "true" and int(width) > 0 and int(height) > 0, name
        assert (int(width), int(height)) == report.png_size((out.parent / "report_files" / f"{name}.png").read_bytes())


def test_a_screenshot_of_the_page_is_not_blank(page, tmp_path):
    out, _ = page
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", "--virtual-time-budget=10000", out.as_uri())
    assert shot.is_file(), "chromium wrote no screenshot"
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (3000, 1200)
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100        # text, tables and plots, not an empty white page
