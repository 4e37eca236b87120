"""The README stays a short front page and the docs cannot rot: every relative link (and its
#anchor) in README.md and docs/*.md points at something that exists, the mkdocs nav lists every
page, the README's test command is the one CI runs, and the pictures stay small. CI also builds
the site with `mkdocs build --strict` (.ci/run), which checks the same links the way the site
resolves them; these tests check them the way the repository page does."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_README_LINES = 150
MAX_IMAGE_BYTES = 150 * 1024

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _links(path: Path) -> list[tuple[int, str]]:
    return [(number, target) for number, line in _prose_lines(path)
            for target in LINK.findall(INLINE_CODE.sub("", line))]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces as -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = unicodedata.normalize("NFKC", text.replace("`", "").replace("*", "")).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(path):
        match = HEADING.match(line)
        if match:
            slug = _slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target)) or target.startswith("//")


def test_readme_is_a_short_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move the details to docs/")


def test_readme_test_command_is_what_ci_runs():
    ci_last = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip("\n").splitlines()[-1]
    assert ci_last.startswith("python3.11 -m venv .venv") and "pytest" in ci_last
    assert ci_last in README.read_text(encoding="utf-8").splitlines()


def test_readme_shows_the_main_job_and_the_pictures():
    text = README.read_text(encoding="utf-8")
    assert ".venv/bin/edge run --source ../shared/datasets/face-mask-voc/images" in text
    for picture in ("docs/images/annotated.jpg", "docs/images/dashboard.jpg"):
        assert f"]({picture})" in text


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files_and_anchors(page: Path):
    broken = []
    for number, target in _links(page):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{number} -> {target}"
        if not destination.exists():
            broken.append(f"{where}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{where}: no heading with that anchor in {destination.name}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _nav_targets(entries) -> list[str]:
    targets = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        targets.extend(_nav_targets(value) if isinstance(value, list) else [value])
    return targets


def test_mkdocs_nav_lists_every_docs_page():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs" and config["theme"]["name"] == "material"
    nav = _nav_targets(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
                   if "hooks" not in p.relative_to(DOCS).parts)
    assert not [p for p in pages if p not in nav], "docs pages missing from mkdocs.yml's nav"
    assert not [t for t in nav if not (DOCS / t).is_file()], "nav entries with no file"


def test_doc_pictures_are_small():
    pictures = sorted((DOCS / "images").iterdir())
    assert pictures, "docs/images/ holds the README's pictures"
    for picture in pictures:
        assert picture.stat().st_size <= MAX_IMAGE_BYTES, f"{picture.name} is over 150 KB"


def test_slugs_follow_github():
    assert _slug("3-class: incorrectly worn masks (ablation and the shipped model)") == (
        "3-class-incorrectly-worn-masks-ablation-and-the-shipped-model")
    assert _slug("Accuracy on the trainer's leak-free test split") == (
        "accuracy-on-the-trainers-leak-free-test-split")
    assert _slug("Measure and test: `edge evaluate`, `edge make-video`") == (
        "measure-and-test-edge-evaluate-edge-make-video")
