"""PromQL helpers shared by the rule tests (tests/alerts) and the dashboard tests.

Why a hand-written reader instead of a PromQL parser: no Python PromQL parser is a dependency
here, and promtool (the real parser) only says whether an expression parses. What the tests
need beyond that is small and lexical: which metric names an expression reads, which function
call encloses a selector, and what a range selector's duration is. The tokenizer below gets
those right for everything that parses, because PromQL keeps label matchers (`{...}`), ranges
(`[...]`) and strings as self-contained lexical units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from exporter.metrics import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
RULE_DIRS = (ROOT / "alerts" / "rules", ROOT / "alerts" / "compat")

# Series Prometheus itself provides.
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
# PromQL words that look like identifiers but are not metric names.
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'" + r"|`[^`]*`")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_COMMENT = re.compile(r"#[^\n]*")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\w*)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords,
    label names (grouping lists, matchers), label values, strings, numbers or durations."""
    text = _COMMENT.sub(" ", expr)
    text = _STRING.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def rule_files() -> list[Path]:
    """Every rule file we ship: alerts/rules/*.yaml and, where present, alerts/compat/*.yaml."""
    return [path for directory in RULE_DIRS for path in sorted(directory.glob("*.yaml"))]


def recording_rule_names(files: Iterable[Path] | None = None) -> set[str]:
    """The `record:` names of our rule files: series a dashboard or alert may read although
    the exporter does not expose them."""
    names: set[str] = set()
    for path in rule_files() if files is None else files:
        document = yaml.safe_load(path.read_text()) or {}
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    names.add(rule["record"])
    return names


def known_names(recorded: set[str]) -> set[str]:
    """Every series name an expression may read: the exporter's catalog (with and without a
    counter's `_total`), Prometheus' own series and `recorded`."""
    names = set(BUILTIN_SERIES) | recorded
    for family in BY_NAME.values():
        names.add(family.name)
        names.add(family.base_name)
    return names


def unknown_names(expr: str, recorded: set[str]) -> set[str]:
    """Metric names in `expr` that neither the exporter nor our recording rules define."""
    known = known_names(recorded)
    unknown = set()
    for name in metric_names(expr):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        if name not in known and base not in known:
            unknown.add(name)
    return unknown


# -- structure: selectors, ranges and the calls around them ---------------------------------

# Functions whose first argument is a range vector of a counter.
COUNTER_FUNCTIONS = {"rate", "irate", "increase"}
_LIST_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<matchers>\{(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|[^{}"'`])*\})
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[a-zA-Z]*))
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Selector:
    """A vector selector in an expression: its metric name, the range that follows it (the
    text between `[` and `]`, "" for an instant selector) and the calls around it, innermost
    last (None for a parenthesis that is not a call)."""

    name: str
    range: str
    calls: tuple[str | None, ...]

    @property
    def call(self) -> str | None:
        """The call the selector is an argument of, None if none (or a plain parenthesis)."""
        return self.calls[-1] if self.calls else None


@dataclass(frozen=True)
class RangeUse:
    """A range `[...]` in an expression and the call it is an argument of (None if none)."""

    text: str
    call: str | None


def _tokens(expr: str) -> list[tuple[str, str]]:
    return [
        (match.lastgroup or "other", match.group(0))
        for match in _TOKEN.finditer(expr)
        if match.lastgroup != "space"
    ]


def _walk(expr: str) -> tuple[list[Selector], list[RangeUse]]:
    tokens = _tokens(expr)
    stack: list[str | None] = []
    selectors: list[Selector] = []
    ranges: list[RangeUse] = []
    index = 0
    pending: str | None = None  # an aggregation waiting for its argument after `by (...)`
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "ident" and text.lower() in _LIST_WORDS and following[0] == "open":
            # Skip the label list: by (a, b)
            depth, index = 0, index + 1
            while index < len(tokens):
                if tokens[index][0] == "open":
                    depth += 1
                elif tokens[index][0] == "close":
                    depth -= 1
                    if depth == 0:
                        break
                index += 1
            index += 1
            continue
        if kind == "ident" and following[0] == "open":
            stack.append(text)
            index += 2
            continue
        if (
            kind == "ident"
            and following[0] == "ident"
            and following[1].lower() in {"by", "without"}
        ):
            pending = text  # sum by (x) (...)
            index += 1
            continue
        if kind == "open":
            stack.append(pending)
            pending = None
        elif kind == "close":
            if stack:
                stack.pop()
        elif kind == "range":
            ranges.append(RangeUse(text[1:-1].strip(), stack[-1] if stack else None))
        elif kind == "ident" and text.lower() not in KEYWORDS:
            after = index + 1
            if after < len(tokens) and tokens[after][0] == "matchers":
                after += 1
            selector_range = ""
            if after < len(tokens) and tokens[after][0] == "range":
                selector_range = tokens[after][1][1:-1].strip()
            selectors.append(Selector(text, selector_range, tuple(stack)))
        index += 1
    return selectors, ranges


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of `expr` with its range and enclosing calls."""
    return _walk(expr)[0]


def ranges(expr: str) -> list[RangeUse]:
    """Every range or subquery range `[...]` of `expr` with the call it is an argument of."""
    return _walk(expr)[1]
