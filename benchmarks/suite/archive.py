"""Keep benchmarks/results/ small: the latest run in full, earlier runs as
their headline (the title and the targets table) in INDEX.md.

Every line of INDEX.md is copied from a result file the suite wrote; the
raw JSON and plots of an archived run stay in git history.
"""
import glob
import os
import re

INDEX = "INDEX.md"
HEADER = ("# Earlier benchmark runs\n\n"
          "The headline of each earlier run, copied from the result file the suite wrote "
          "(its title and targets table). The full files, with their JSON and plots, are in "
          "git history under benchmarks/results/.\n")
_STEM = re.compile(r"^(\d{4}-\d{2}-\d{2}-\d{4}-[a-z]+)\.md$")


def headline(markdown):
    """The title line and the '## Targets' section of a result file."""
    lines = markdown.splitlines()
    title = lines[0] if lines else ""
    targets = []
    inside = False
    for line in lines:
        if line.startswith("## "):
            inside = line.strip() == "## Targets"
            continue
        if inside and not line.rstrip().endswith("| not measured |"):
            targets.append(line)
    body = "\n".join(targets).strip()
    return "#" + title + "\n\n" + (body or "(no targets in this run)") + "\n"


def archive(results_dir, keep_stem):
    """Move every run but keep_stem into INDEX.md (newest first) and delete its files."""
    keep = os.path.basename(keep_stem)
    entries = {}
    index_path = os.path.join(results_dir, INDEX)
    if os.path.exists(index_path):
        with open(index_path) as handle:
            text = handle.read()
        for block in re.split(r"(?m)^(?=## circus benchmarks: )", text)[1:]:
            entries[block.splitlines()[0]] = block.rstrip() + "\n"
    archived = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.md"))):
        match = _STEM.match(os.path.basename(path))
        if match is None or match.group(1) == keep:
            continue
        with open(path) as handle:
            block = headline(handle.read())
        entries[block.splitlines()[0]] = block
        for leftover in glob.glob(os.path.join(results_dir, match.group(1) + "*")):
            os.remove(leftover)
        archived.append(match.group(1))
    if entries:
        with open(index_path, "w") as handle:
            handle.write(HEADER)
            for title in sorted(entries, reverse=True):
                handle.write("\n" + entries[title])
    return archived
