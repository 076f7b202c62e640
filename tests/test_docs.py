"""The docs say what the code does: figures come from the code, or from one measured place.

Two kinds of figures appear in the Markdown files:

* settings of the code (the NVML event wait, the kernel-log file poll...): each test reads the
  constant and requires every doc that quotes it to quote that value;
* measurements (Xid latency, grpc's memory): they live in the README's Measured table, next to
  the command that produces them; any other doc that repeats one must repeat the same figure
  (the rest link to the table), so two docs can never disagree again.
"""

from __future__ import annotations

import re
import shlex
import threading
from pathlib import Path

import pytest

from exporter import metrics
from exporter.publisher import Publisher
from exporter.sources import kmsg
from exporter.sources.nvml import XID_EVENT_WAIT_MS
from exporter.xid.state import DEDUPE_WINDOW_SECONDS, XidState

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def read(path: Path) -> str:
    return path.read_text()


def flat(text: str) -> str:
    """Markdown wraps lines anywhere: compare with whitespace collapsed."""
    return " ".join(text.split())


def blocks(text: str) -> list[str]:
    """Paragraphs and table rows, each flattened: a figure and its subject share one block."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        rows = [line for line in paragraph.splitlines() if line.lstrip().startswith("|")]
        if rows:
            out.extend(flat(row) for row in rows)
        else:
            out.append(flat(paragraph))
    return out


# --- settings quoted from the code ----------------------------------------------------------

EVENT_WAIT = re.compile(r"nvmlEventSetWait\w*`?\s*\((\d+)\s*ms")


def test_every_doc_quotes_the_nvml_event_wait_of_the_code() -> None:
    quoted = {path.name: EVENT_WAIT.findall(flat(read(path))) for path in DOCS}
    assert quoted["xid.md"], "docs/xid.md no longer states the event wait"
    wrong = {
        name: values for name, values in quoted.items() if set(values) - {str(XID_EVENT_WAIT_MS)}
    }
    assert wrong == {}, f"the code waits {XID_EVENT_WAIT_MS} ms"


def test_xid_md_quotes_the_kernel_log_settings() -> None:
    text = flat(read(ROOT / "docs/xid.md"))
    assert f"checked every {kmsg.FILE_GROWTH_CHECK_SECONDS * 1000:g} ms" in text
    assert f"longer than {kmsg.MAX_RECORD_BYTES // 1024} KiB" in text
    assert f"the first {kmsg.UNPARSED_LOG_FIRST} and then every {kmsg.UNPARSED_LOG_EVERY}th" in text
    assert f"within {DEDUPE_WINDOW_SECONDS:g} seconds" in text


def kmsg_results() -> list[str]:
    """The result labels the kernel-log follower counts (it publishes a series for each)."""
    publisher = Publisher(process_metrics=False)
    state = XidState(publisher, lambda: ())
    follower = kmsg.KmsgFollower("/nonexistent", state, publisher, threading.Event())
    return list(follower._results)


def test_kmsg_records_help_names_every_result() -> None:
    results = kmsg_results()
    assert "unframed" in results
    help_text = metrics.KMSG_RECORDS.help
    missing = [result for result in results if result not in help_text]
    assert missing == []
    xid_row = next(b for b in blocks(read(ROOT / "docs/xid.md")) if "kmsg_records_total" in b)
    assert [result for result in results if f"`{result}`" not in xid_row] == []


# --- `make run`, as the README tells it -----------------------------------------------------


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target, with the Makefile's own variables expanded."""
    text = read(ROOT / "Makefile")
    variables = dict(re.findall(r"^(\w+)\s*\??:?=\s*(.*?)\s*$", text, re.MULTILINE))
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"no {target} target"

    def expand(line: str) -> str:
        for _ in range(4):  # nested variables ($(PY) is $(BIN)/python)
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        return line.strip()

    return [expand(line) for line in match.group(1).splitlines()]


def test_readme_says_what_make_run_runs() -> None:
    text = flat(read(README))
    (run,) = make_recipe("run")
    command = shlex.split(run)
    command[0] = Path(command[0]).name  # .venv/bin/gpu-node-exporter
    assert f"`{shlex.join(command)}`" in text
    install = next(line for line in make_recipe("$(PY)") if "pip install" in line and "-e" in line)
    words = [word for word in shlex.split(install) if word != "--quiet"]
    words[0] = Path(words[0]).name  # .venv/bin/pip
    assert f"`{shlex.join(words)}`" in text
    assert "`make run` is `pip install -e .`" not in text


# --- measured figures: one place ---------------------------------------------------------------

MEASURED_HEADING = re.compile(
    r'<a id="measured"></a>\s*### Measured[^\n]*\n(.*?)(?=\n#)', re.DOTALL
)
# (topic, words every block quoting it contains, the figure's pattern)
TOPICS = [
    (
        "Xid latency",
        ("xid", "/metrics"),
        re.compile(r"median\s+([\d.]+)\s*ms,\s*p99\s+([\d.]+)\s*ms"),
    ),
    ("grpc memory", ("grpc",), re.compile(r"\bgrpc\b[^|;]{0,40}?\b(\d+(?:\.\d+)?)\s*(?:MiB|MB)\b")),
]


def measured_table() -> str:
    match = MEASURED_HEADING.search(read(README))
    assert match, "README.md lost its Measured table or its 'measured' anchor"
    return match.group(1)


def quotes(text: str, words: tuple[str, ...], pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for block in blocks(text):
        if all(word in block.lower() for word in words):
            found.extend(
                match if isinstance(match, tuple) else (match,) for match in pattern.findall(block)
            )
    return found


def disagreements(docs: dict[str, str]) -> list[str]:
    """Every quote of a measured figure that differs from the README's Measured table."""
    table = measured_table()
    problems: list[str] = []
    for topic, words, pattern in TOPICS:
        canonical = quotes(table, words, pattern)
        assert len(canonical) == 1, f"the Measured table should state the {topic} once"
        for name, text in docs.items():
            problems.extend(
                f"{name}: {topic} {figure} (Measured: {canonical[0]})"
                for figure in quotes(text, words, pattern)
                if figure != canonical[0]
            )
    return problems


def test_measured_figures_agree_with_the_readme_table() -> None:
    docs = {str(path.relative_to(ROOT)): read(path) for path in DOCS}
    assert disagreements(docs) == []


@pytest.mark.parametrize(
    "sentence",
    [
        "grpc (about 12 MB of memory) is imported only when this is on.",
        "Xid record written to a FIFO -> visible on `/metrics`, 200 records: median 13.6 ms, "
        "p99 24.6 ms (budget 100 ms).",
    ],
)
def test_a_doc_repeating_a_different_figure_fails(sentence: str) -> None:
    """The check catches the two disagreements it was written for (they were real)."""
    assert disagreements({"docs/example.md": f"Some text.\n\n{sentence}\n"}) != []


def test_docs_that_drop_figures_link_to_the_table() -> None:
    for name in ("docs/xid.md", "docs/kubernetes.md"):
        assert "../README.md#measured" in read(ROOT / name), name


# --- PromQL in the docs -----------------------------------------------------------------------

PROMQL_BLOCK = re.compile(r"```promql\n(.*?)```", re.DOTALL)
# Names a doc query may read that are not ours: kube-state-metrics and Prometheus itself.
FOREIGN_METRICS = re.compile(r"^(kube_|up$|ALERTS)")


def _expressions(block: str) -> list[str]:
    """A block of several queries: each starts on an unindented line, continues on indented
    ones; `#` lines are comments."""
    chunks: list[list[str]] = []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and chunks:
            chunks[-1].append(line)
        else:
            chunks.append([line])
    return ["\n".join(chunk) for chunk in chunks]


def _promtool_failures(promtool: str, exprs: list[str], path: Path) -> set[int]:
    """Indexes of the expressions promtool cannot parse (all of them checked in one run)."""
    import subprocess

    import yaml

    rules = [{"record": f"doc:example_{n}", "expr": expr} for n, expr in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    failed = {int(n) for n in re.findall(r'"doc:example_(\d+)"', result.stdout + result.stderr)}
    assert result.returncode == 0 or failed, result.stdout + result.stderr
    return failed


def test_every_promql_example_in_the_docs_parses_and_reads_known_series(tmp_path: Path) -> None:
    """What a reader pastes into Prometheus must parse (promtool) and name our real families or
    recording rules: a renamed metric breaks this test instead of a user's dashboard. A block
    is one expression, or (runbooks list several to look at) one per unindented line."""
    from tests.promql import recording_rule_names, unknown_names
    from tests.tools import require_tool

    promtool = require_tool("promtool")
    examples = [(doc, block.strip()) for doc in DOCS for block in PROMQL_BLOCK.findall(read(doc))]
    assert len(examples) >= 20, "fewer PromQL examples than the docs hold: is the regex right?"
    failed = _promtool_failures(promtool, [e for _, e in examples], tmp_path / "blocks.yaml")
    checked = [example for n, example in enumerate(examples) if n not in failed]
    lines = [
        (doc, chunk)
        for n, (doc, block) in enumerate(examples)
        if n in failed
        for chunk in _expressions(block)
    ]
    bad = _promtool_failures(promtool, [e for _, e in lines], tmp_path / "lines.yaml")
    assert not bad, [f"{lines[n][0].name}: {lines[n][1]}" for n in sorted(bad)]
    recorded = recording_rule_names()
    for doc, expr in checked + lines:
        unknown = {n for n in unknown_names(expr, recorded) if not FOREIGN_METRICS.match(n)}
        assert not unknown, f"{doc.name}: {sorted(unknown)} in {expr!r}"
