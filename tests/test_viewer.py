"""The HTML viewer: the page's data, the `mmad view` command, and the page's behaviour in a real browser.

The browser tests open the page from the file system in headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages, driven by selenium; nothing is downloaded) and read the DOM after the
page's scripts ran. They are skipped, with the reason, where no browser is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from mmad.cli import main
from mmad.viewer import read_detections, read_ground_truth, render_page, write_viewer_page

VIDEO_ID = "val0000"


@pytest.fixture(scope="module")
def puppet(tmp_path_factory):
    """A tiny MicroPuppet detection set: (root, video path, keypoint folder, ground truth, detections)."""
    from mmad.synth import generate_detection

    root = generate_detection(tmp_path_factory.mktemp("puppet") / "data", preset="tiny", seed=3)
    root = Path(root)
    truth = read_ground_truth(root / "mmad.json", VIDEO_ID)
    rows = []
    for i, g in enumerate(truth.itertuples(index=False)):
        rows.append((VIDEO_ID, g.t_start + 0.1, g.t_end - 0.1, g.label, 0.9 - 0.05 * i))   # good ones
        rows.append((VIDEO_ID, g.t_start + 0.6, g.t_end + 0.4, g.label, 0.3 - 0.02 * i))   # weak ones
    rows.append((VIDEO_ID, 0.2, 0.9, 50, 0.15))  # a class with no ground truth
    rows.append(("other", 0.0, 1.0, 3, 0.99))    # another video: left out
    table = pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "class", "score"])
    csv = root / "detections.csv"
    table.to_csv(csv)
    return root, root / "videos" / f"{VIDEO_ID}.mp4", root / "keypoints" / VIDEO_ID, truth, csv


def page_data(path: Path) -> dict:
    """The JSON object injected into a written page."""
    text = path.read_text(encoding="utf-8")
    match = re.search(r"const DATA = (.*);\n", text)
    assert match, "no data in the page"
    return json.loads(match.group(1).replace("<\\/", "</"))


# ------------------------------------------------------------------------------------- no browser needed


def test_read_detections_formats(puppet, tmp_path):
    root, video, _, truth, csv = puppet
    table = read_detections(csv, VIDEO_ID)
    assert len(table) == 2 * len(truth) + 1
    assert list(table["score"]) == sorted(table["score"], reverse=True)
    detect_json = tmp_path / f"{VIDEO_ID}.json"
    detect_json.write_text(json.dumps({"video_id": VIDEO_ID, "duration": 6.0, "fps": 30.0, "detections": [
        {"class_id": 3, "class_name": "x", "body_group": None, "t_start": 1.0, "t_end": 2.0, "score": 0.5}]}))
    assert read_detections(detect_json, VIDEO_ID).iloc[0].to_dict() == {"label": 3, "t_start": 1.0, "t_end": 2.0,
                                                                        "score": 0.5}
    from mmad.errors import DataError

    with pytest.raises(DataError, match="not 'elsewhere'"):
        read_detections(detect_json, "elsewhere")


def test_page_data_and_escaping(puppet, tmp_path):
    root, video, keypoints, truth, csv = puppet
    detections = read_detections(csv, VIDEO_ID)
    page = write_viewer_page(tmp_path / "sub" / "page.html", video, detections, ground_truth=truth,
                             keypoints_dir=keypoints, embed="never", title="a </script> title")
    text = page.read_text()
    assert "</script> title" not in text  # the title cannot close the script
    data = page_data(page)
    assert data["title"] == "a </script> title"
    assert not data["video"].startswith(("data:", "/"))  # a path relative to the page
    assert (tmp_path / "sub" / unquote(data["video"])).resolve() == video.resolve()
    assert len(data["detections"]) == len(detections) and len(data["ground_truth"]) == len(truth)
    assert data["classes"]["50"]["group"] == "leg-hand" and data["classes"]["50"]["name"]
    assert len(data["keypoints"]["frames"]) == data["num_frames"]
    assert len(data["boxes"]["names"]) == 6
    embedded = page_data(write_viewer_page(tmp_path / "embedded.html", video, detections))
    assert embedded["video"].startswith("data:video/mp4;base64,") and embedded["keypoints"] is None


def test_render_page_has_no_external_resources():
    text = render_page({"title": "t"})
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "<script src" not in text and "@import" not in text


def test_cli_view(puppet, tmp_path, capsys):
    root, video, keypoints, truth, csv = puppet
    out = tmp_path / "view.html"
    rc = main(["view", str(video), "--detections", str(csv), "--ground-truth", str(root / "mmad.json"),
               "--keypoints", str(keypoints), "--out", str(out)])
    assert rc == 0
    assert f"{2 * len(truth) + 1} detections, {len(truth)} ground-truth instances" in capsys.readouterr().out
    assert len(page_data(out)["detections"]) == 2 * len(truth) + 1
    rc = main(["view", str(video), "--detections", str(tmp_path / "missing.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing.csv" in err


# ------------------------------------------------------------------------------------------ in a browser


def _browser_paths() -> tuple[str, str] | None:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    paths = _browser_paths()
    if paths is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (apt-get install "
                    "chromium chromium-driver) to run the viewer's browser tests")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium look for a driver on the network
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(puppet, tmp_path_factory):
    root, video, keypoints, truth, csv = puppet
    out = tmp_path_factory.mktemp("pages") / "pages" / f"{VIDEO_ID}.html"
    write_viewer_page(out, video, read_detections(csv, VIDEO_ID), ground_truth=truth, keypoints_dir=keypoints,
                      embed="never")
    return out


def open_page(driver, path: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1' && video.readyState >= 1"))
    return page_data(path)


def js(driver, script: str):
    return driver.execute_script("return " + script)


def test_rows_and_bars_equal_the_data(browser, page):
    data = open_page(browser, page)
    labels = {d["label"] for d in data["detections"]} | {g["label"] for g in data["ground_truth"]}
    assert js(browser, "document.querySelectorAll('.row').length") == len(labels)
    assert js(browser, "[...document.querySelectorAll('.row')].map(r => Number(r.dataset.label))") == sorted(labels)
    assert js(browser, "document.querySelectorAll('.bar.gt').length") == len(data["ground_truth"])
    assert js(browser, "document.querySelectorAll('.bar.det').length") == len(data["detections"])
    assert js(browser, "document.querySelectorAll('#detections tbody tr').length") == len(data["detections"])
    # the video plays from its relative path: H.264 decodes in this Chromium
    assert js(browser, "video.error") is None
    assert js(browser, "video.duration") == pytest.approx(data["duration"], abs=0.05)


def test_threshold_slider_hides_bars_below_it(browser, page):
    data = open_page(browser, page)
    for threshold in (0.0, 0.25, 0.5, 0.8):
        browser.execute_script(
            "const s = document.getElementById('threshold'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'));", threshold)
        expected = sum(d["score"] >= threshold for d in data["detections"])
        shown = js(browser, "[...document.querySelectorAll('.bar.det')].filter(b => getComputedStyle(b).display !== 'none').length")
        assert shown == expected, threshold
        rows = js(browser, "[...document.querySelectorAll('#detections tbody tr')].filter(r => r.offsetParent !== null).length")
        assert rows == expected
    # every ground-truth bar stays
    assert js(browser, "[...document.querySelectorAll('.bar.gt')].filter(b => b.offsetParent !== null).length") == len(
        data["ground_truth"])


def test_clicking_a_bar_seeks_to_its_onset(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    data = open_page(browser, page)

    checked = 0
    for bar in browser.find_elements(By.CSS_SELECTOR, ".bar"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", bar)
        # click 3 px inside the bar's left end, where no later bar covers it
        on_top = browser.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return document.elementFromPoint(r.left + 3, r.top + r.height / 2) === arguments[0];", bar)
        if not on_top:
            continue
        width = bar.size["width"]
        ActionChains(browser).move_to_element_with_offset(bar, -width / 2 + 3, 0).click().perform()
        assert js(browser, "video.currentTime") == pytest.approx(float(bar.get_attribute("data-start")), abs=1e-3)
        assert js(browser, "video.paused")
        if bar.get_attribute("data-index"):
            onset = data["detections"][int(bar.get_attribute("data-index")) - 1]["t_start"]
            assert js(browser, "video.currentTime") == pytest.approx(onset, abs=1e-3)
        checked += 1
    assert checked >= 6


def test_active_rows_and_cursor_follow_the_time(browser, page):
    data = open_page(browser, page)
    for t in (f * data["duration"] for f in (0.1, 0.35, 0.55, 0.9)):
        browser.execute_script("video.currentTime = arguments[0]; update();", t)
        expected = {s["label"] for s in data["ground_truth"] + data["detections"] if s["t_start"] <= t < s["t_end"]}
        active = js(browser, "[...document.querySelectorAll('.row.active')].map(r => Number(r.dataset.label))")
        assert set(active) == expected, t
        left = js(browser, "document.getElementById('cursor').getBoundingClientRect().left")
        track = js(browser, "(() => { const r = document.querySelector('.track').getBoundingClientRect(); return [r.left, r.width]; })()")
        assert left == pytest.approx(track[0] + track[1] * t / data["duration"], abs=1.5)


def test_overlay_draws_the_joints_and_boxes_of_the_frame(browser, page, puppet):
    from mmad.entities import entity_boxes
    from mmad.keypoints import read_openpose_folder

    data = open_page(browser, page)
    root, video, keypoints_dir, _, _ = puppet
    keypoints = read_openpose_folder(keypoints_dir, frame_size=(data["width"], data["height"]),
                                     num_frames=data["num_frames"])
    _, confidence = entity_boxes(keypoints, "body25_hands", frame_size=(data["width"], data["height"]))
    for frame in (0, 37, data["num_frames"] - 1):
        browser.execute_script("video.currentTime = arguments[0]; update();", (frame + 0.5) / data["fps"])
        assert int(js(browser, "document.getElementById('overlay').dataset.frame")) == frame
        assert int(js(browser, "document.getElementById('overlay').dataset.joints")) == int((keypoints[frame, :, 2] > 0).sum())
        assert int(js(browser, "document.getElementById('overlay').dataset.boxes")) == int((confidence[frame] > 0).sum())
    assert (keypoints[37, :, 2] > 0).sum() > 10  # the test looks at a frame where the person is seen
    # something was painted: some canvas pixels are not transparent
    painted = js(browser, "(() => { const c = document.getElementById('overlay'); const d = c.getContext('2d')"
                          ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
                          " n += d[i] > 0; return n; })()")
    assert painted > 100
    browser.find_element("id", "show-skeleton").click()
    assert js(browser, "document.getElementById('overlay').dataset.joints") == "0"


def test_keyboard_steps_frames_and_jumps_to_detections(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    data = open_page(browser, page)
    browser.execute_script("seek(1.0)")
    frame = int(js(browser, "frameAt(video.currentTime)"))
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    assert int(js(browser, "frameAt(video.currentTime)")) == frame + 1
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).send_keys(Keys.ARROW_LEFT).perform()
    assert int(js(browser, "frameAt(video.currentTime)")) == frame - 1
    onsets = sorted(d["t_start"] for d in data["detections"])
    now = js(browser, "video.currentTime")
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    assert js(browser, "video.currentTime") == pytest.approx(min(s for s in onsets if s > now + 1e-3), abs=1e-3)
    ActionChains(browser).send_keys(" ").perform()
    assert js(browser, "video.paused") is False
    ActionChains(browser).send_keys(" ").perform()
    assert js(browser, "video.paused") is True


def test_filters_and_sorting(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    data = open_page(browser, page)
    groups = {int(k): v["group"] for k, v in data["classes"].items()}
    group = max(set(groups.values()), key=list(groups.values()).count)
    assert len(set(groups.values())) > 1  # the filter has something to hide
    Select(browser.find_element(By.ID, "group")).select_by_value(group)
    shown = js(browser, "[...document.querySelectorAll('.row')].filter(r => r.offsetParent !== null).map(r => Number(r.dataset.label))")
    assert sorted(shown) == sorted(label for label, g in groups.items() if g == group)
    bars = js(browser, "[...document.querySelectorAll('.bar.det')].filter(b => b.offsetParent !== null).length")
    assert bars == sum(groups[d["label"]] == group for d in data["detections"])
    Select(browser.find_element(By.ID, "group")).select_by_value("")
    first = sorted(groups)[0]
    browser.find_element(By.CSS_SELECTOR, "summary").click()
    browser.find_element(By.CSS_SELECTOR, f"#class-list input[data-label='{first}']").click()
    assert js(browser, f"document.querySelector(\".row[data-label='{first}']\").offsetParent") is None
    browser.find_element(By.CSS_SELECTOR, "th[data-key='t_start']").click()
    starts = js(browser, "[...document.querySelectorAll('#detections tbody tr')].map(r => Number(r.cells[3].textContent))")
    assert starts == sorted(starts)
    browser.find_element(By.CSS_SELECTOR, "th[data-key='t_start']").click()
    starts = js(browser, "[...document.querySelectorAll('#detections tbody tr')].map(r => Number(r.cells[3].textContent))")
    assert starts == sorted(starts, reverse=True)


def test_screenshot(browser, page, tmp_path):
    open_page(browser, page)
    browser.execute_script("seek(2.5)")
    path = tmp_path / "viewer.png"
    assert browser.save_screenshot(str(path))
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 500 and image.shape[1] > 800
    # the timeline's orange detection bars are on screen
    orange = (image[..., 0] > 200) & (image[..., 1] > 60) & (image[..., 1] < 120) & (image[..., 2] < 60)
    assert orange.sum() > 500
