"""mkdocs hook: publish the repository's own Markdown files (and their plots) with the docs.

The docs pages link to files outside docs/ the way the repository page resolves them, e.g.
`[RESULTS.md](../benchmarks/RESULTS.md#input-size-sweep)` in docs/train.md. mkdocs resolves a
link against the page's source path inside docs/, which gives `../benchmarks/RESULTS.md`; so each
file in REPO_FILES is added to the build under exactly that path (relative to docs/) and written
to `repo/<its path in the repository>` in the site. One link then works on the repository page
and in the site, and `mkdocs build --strict` checks it, file and anchor, like any other link.
Links inside those files (RESULTS.md -> results/*.png, a model card -> ../benchmarks/RESULTS.md)
keep working because the files keep their places relative to each other. Nothing is copied.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

# Repository files (globs relative to the repository root) published with the docs.
REPO_FILES = (
    "ARCHITECTURE.md",
    "benchmarks/RESULTS.md",
    "benchmarks/RELIABILITY.md",
    "benchmarks/results/*.png",
    "models/*.md",
)


def on_files(files, config):
    root = Path(config.config_file_path).resolve().parent
    docs_dir = Path(config.docs_dir).resolve()
    for pattern in REPO_FILES:
        for path in sorted(root.glob(pattern)):
            in_repo = path.relative_to(root).as_posix()
            from_docs = Path(os.path.relpath(path, docs_dir)).as_posix()
            # INCLUDED: mkdocs' default exclusion of hidden files would match the leading "../".
            linked = File.generated(
                config, from_docs, abs_src_path=str(path), inclusion=InclusionLevel.INCLUDED
            )
            # Written where a file at docs/repo/<path> would be (repo/.../RESULTS/index.html).
            place = File.generated(config, f"repo/{in_repo}", abs_src_path=str(path))
            linked.dest_uri = place.dest_uri
            files.append(linked)
    return files
