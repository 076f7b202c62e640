"""The Prometheus alert rules (alerts/rules), their promtool tests and the Alertmanager example.

What is checked here, and why:
- promtool accepts the rules with no lint findings, and the promtool unit tests pass;
- amtool accepts alerts/alertmanager.yml;
- every metric an expression (or an annotation's template query) reads exists in the
  exporter's catalog or is one of our recording rules: a renamed metric breaks this test,
  not a silent alert;
- every alert has a severity, summary, description and a runbook_url whose file and
  `## <AlertName>` section exist;
- every alert has at least one promtool case that expects it to fire.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.promql import metric_names, unknown_names
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "alerts" / "rules"
TESTS_DIR = ROOT / "alerts" / "tests"
ALERTMANAGER = ROOT / "alerts" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_PREFIX = "https://github.com/gpu-node-exporter/gpu-node-exporter/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}

# PromQL inside annotation templates: query "..." or query (printf "..." ...).
_TEMPLATE_QUERY = re.compile(r'query\s+\(?\s*(?:printf\s+)?"((?:[^"\\]|\\.)*)"')


def template_queries(annotation: str) -> list[str]:
    """The PromQL strings an annotation's template passes to `query`."""
    return [query.replace('\\"', '"') for query in _TEMPLATE_QUERY.findall(annotation)]


def load_rules() -> list[tuple[Path, dict]]:
    rules = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            rules.extend((path, rule) for rule in group["rules"])
    return rules


RULES = load_rules()
ALERTS = [rule for _, rule in RULES if "alert" in rule]
RECORDED = {rule["record"] for _, rule in RULES if "record" in rule}


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, - for spaces."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def rule_files() -> list[str]:
    return [str(path) for path in sorted(RULES_DIR.glob("*.yaml"))]


def test_rule_files_exist_and_parse() -> None:
    assert rule_files(), "no rule files under alerts/rules"
    assert ALERTS, "no alerts"
    assert RECORDED, "no recording rules"


def test_promtool_check_rules_is_clean() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", *rule_files()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warn" not in output.lower(), output
    assert output.count("SUCCESS") == len(rule_files()), output


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    tests = sorted(TESTS_DIR.glob("*.yaml"))
    assert tests, "no promtool tests under alerts/tests"
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, tests)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FAILED" not in output, output


def test_alertmanager_config_is_valid() -> None:
    amtool = require_tool("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_by_severity() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    route = config["route"]
    assert route["group_by"] == ["alertname", "node", "uuid"]
    by_matcher = {tuple(child["matchers"]): child for child in route["routes"]}
    pager = by_matcher[('severity="critical"',)]
    assert pager["receiver"] == "pager"
    assert pager["group_wait"] == "10s"
    assert by_matcher[('severity="warning"',)]["receiver"] == "tickets"
    assert by_matcher[('severity="info"',)]["receiver"] == "records"
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert set(receivers) == {"pager", "tickets", "records"}
    for name, receiver in receivers.items():
        # The end-to-end test swaps exactly these URLs and uses the rest verbatim.
        assert [hook["url"] for hook in receiver["webhook_configs"]] == [
            f"http://127.0.0.1:9099/{name}"
        ]


_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')


def matches(matchers: list[str], labels: dict[str, str]) -> bool:
    """Alertmanager matcher semantics (the subset the example uses); a missing label is ""."""
    for matcher in matchers:
        found = _MATCHER.match(matcher)
        assert found, f"cannot read matcher {matcher!r}"
        name, op, value = found.groups()
        actual = labels.get(name, "")
        ok = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[op]
        if not ok:
            return False
    return True


def inhibited(config: dict, source: dict[str, str], target: dict[str, str]) -> bool:
    for rule in config["inhibit_rules"]:
        if (
            matches(rule["source_matchers"], source)
            and matches(rule["target_matchers"], target)
            and all(source.get(label, "") == target.get(label, "") for label in rule["equal"])
        ):
            return True
    return False


def test_fallen_off_bus_inhibits_follow_ons_but_never_itself() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    gpu = {"node": "gpu-a", "gpu": "0", "uuid": "GPU-a0"}
    fallen = {"alertname": "NvidiaGpuFallenOffBus", "severity": "critical", **gpu}
    assert not inhibited(config, fallen, fallen)
    assert not inhibited(config, fallen, {**fallen, "uuid": "GPU-a1", "gpu": "1"})
    same_gpu = [
        ("NvidiaGpuXidCritical", "critical"),
        ("NvidiaGpuRecoveryActionReboot", "critical"),
        ("NvidiaGpuXidWarning", "warning"),
        ("NvidiaGpuNotAllocatable", "warning"),
        ("NvidiaGpuNvlinkDown", "warning"),
    ]
    for name, severity in same_gpu:
        target = {"alertname": name, "severity": severity, **gpu}
        assert inhibited(config, fallen, target), name
        # ... but not on another GPU of the node.
        assert not inhibited(config, fallen, {**target, "uuid": "GPU-a1"}), name
    for name in ("NvidiaGpuCountDropped", "NvidiaGpuExporterSourceDown"):
        target = {"alertname": name, "severity": "warning", "node": "gpu-a"}
        assert inhibited(config, fallen, target), name
        assert not inhibited(config, fallen, {**target, "node": "gpu-b"}), name
    # A fall of a GPU the exporter could not identify (no uuid) must not mute the node's
    # per-GPU alerts or its exporter-down alert.
    anonymous = {"alertname": "NvidiaGpuFallenOffBus", "severity": "critical", "node": "gpu-a"}
    down = {"alertname": "NvidiaGpuExporterDown", "severity": "warning", "node": "gpu-a"}
    assert not inhibited(config, anonymous, down)
    xid = {"alertname": "NvidiaGpuXidCritical", "severity": "critical", **gpu}
    assert not inhibited(config, anonymous, xid)


@pytest.mark.parametrize(
    "rule", [rule for _, rule in RULES], ids=lambda r: r.get("alert") or r["record"]
)
def test_every_metric_exists(rule: dict) -> None:
    expressions = [rule["expr"]]
    for value in rule.get("annotations", {}).values():
        expressions.extend(template_queries(value))
    for expr in expressions:
        assert not unknown_names(expr, RECORDED), f"unknown metric in {expr!r}"


def test_metric_checker_catches_a_misspelt_name() -> None:
    bad = 'rate(nvidia_gpu_clock_event_duraton_seconds_total{reason="thermal"}[5m]) > 0.2'
    assert unknown_names(bad, RECORDED) == {"nvidia_gpu_clock_event_duraton_seconds_total"}
    misspelt_recording = "gpu_xid:nvidia_gpu_xid_errors:increase5m > 0"
    assert unknown_names(misspelt_recording, RECORDED) == {
        "gpu_xid:nvidia_gpu_xid_errors:increase5m"
    }
    in_template = "count by (namespace, pod) (last_over_time(nvidia_gpu_pod_infos{node='%s'}[15m]))"
    assert unknown_names(
        template_queries(f'{{{{ query (printf "{in_template}" $x) }}}}')[0], RECORDED
    ) == {"nvidia_gpu_pod_infos"}


def test_metric_checker_ignores_labels_strings_functions_and_keywords() -> None:
    expr = """
      max by (node, gpu, uuid) (time() - nvidia_gpu_xid_last_seen_timestamp_seconds{xid="79"} < 900)
      or on (node, uuid) group_left (model)
      sum without (instance) (
        increase(nvidia_gpu_xid_errors_total{xid=~"13|31", name="x y"}[10m] offset 5m)
      )
      and bool 1e3 > inf
    """
    assert metric_names(expr) == {
        "nvidia_gpu_xid_last_seen_timestamp_seconds",
        "nvidia_gpu_xid_errors_total",
    }


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a["alert"])
def test_alert_has_severity_annotations_and_runbook(alert: dict) -> None:
    name = alert["alert"]
    assert re.fullmatch(r"NvidiaGpu[A-Z][A-Za-z0-9]*", name), name
    assert alert.get("labels", {}).get("severity") in SEVERITIES, name
    annotations = alert.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key), f"{name}: no {key}"
    assert "{{" not in annotations["summary"], f"{name}: summary must be static"
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX), url
    file_part, _, anchor = url[len(RUNBOOK_PREFIX) :].partition("#")
    runbook = RUNBOOKS / file_part
    assert runbook.is_file(), f"{name}: {runbook} missing"
    headings = [
        line[3:].strip() for line in runbook.read_text().splitlines() if line.startswith("## ")
    ]
    assert name in headings, f"{name}: no '## {name}' in {runbook}"
    assert anchor == github_anchor(name), f"{name}: anchor {anchor!r}"


def test_alert_names_are_unique() -> None:
    names = [alert["alert"] for alert in ALERTS]
    assert len(names) == len(set(names))


def test_runbook_index_lists_every_runbook_file() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    for path in RUNBOOKS.glob("*.md"):
        if path.name != "README.md":
            assert f"({path.name})" in index, path.name
    for alert in ALERTS:
        assert alert["alert"] in index, alert["alert"]


def firing_tests() -> set[str]:
    names = set()
    for path in TESTS_DIR.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        for group in document.get("tests", []):
            for case in group.get("alert_rule_test", []) or []:
                if case.get("exp_alerts"):
                    names.add(case["alertname"])
    return names


def test_every_alert_has_a_firing_test() -> None:
    missing = {alert["alert"] for alert in ALERTS} - firing_tests()
    assert not missing, f"alerts without a promtool case that fires: {sorted(missing)}"
