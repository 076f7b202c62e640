"""deploy/generated/ is what scripts/gen_deploy.py makes from alerts/rules and dashboards/json.

- `gen_deploy.py --check` passes on the checkout (nothing drifted), and fails, naming the
  file, on a stale, missing or left-over file;
- generation is deterministic;
- after kustomize, every PrometheusRule holds exactly its source file's groups, the rules
  ConfigMap holds the source files byte for byte, and there is one dashboard ConfigMap per
  dashboard with the JSON unchanged, the sidecar label and the folder annotation;
- inputs that cannot become a manifest are refused by the generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scripts import gen_deploy
from tests.deploy.manifests import NAME, ROOT, of_kind, one, render

RULES = sorted((ROOT / "alerts" / "rules").glob("*.yaml"))
DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))


def test_checkout_has_no_drift(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_deploy.main(["--check"]) == 0, capsys.readouterr().err


def test_generation_is_deterministic() -> None:
    assert gen_deploy.generate() == gen_deploy.generate()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    target = tmp_path / "generated"
    assert gen_deploy.main(["--out", str(target)]) == 0
    assert gen_deploy.main(["--check", "--out", str(target)]) == 0
    return target


def test_check_names_a_stale_file(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = out / "prometheus-rules" / "xid.yaml"
    path.write_text(path.read_text() + "# edited by hand\n")
    assert gen_deploy.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "stale: prometheus-rules/xid.yaml" in err
    assert "gen_deploy.py" in err


def test_check_names_a_missing_and_a_left_over_file(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (out / "dashboards" / "nvidia-gpu-node.json").unlink()
    (out / "dashboards" / "old-dashboard.json").write_text("{}")
    assert gen_deploy.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "missing: dashboards/nvidia-gpu-node.json" in err
    assert "left over): dashboards/old-dashboard.json" in err


def test_write_removes_left_overs(out: Path) -> None:
    (out / "dashboards" / "old-dashboard.json").write_text("{}")
    assert gen_deploy.main(["--out", str(out)]) == 0
    assert not (out / "dashboards" / "old-dashboard.json").exists()


def test_prometheus_rules_equal_their_sources() -> None:
    rules = {
        obj["metadata"]["name"]: obj
        for obj in of_kind(render("prometheus-operator"), "PrometheusRule")
    }
    assert set(rules) == {f"{NAME}-{path.stem}" for path in RULES}
    for path in RULES:
        source = yaml.safe_load(path.read_text())
        assert rules[f"{NAME}-{path.stem}"]["spec"] == source, f"{path.name} drifted"


def test_rule_comparison_sees_a_changed_expression() -> None:
    obj = of_kind(render("prometheus-operator"), "PrometheusRule")[0]
    source = yaml.safe_load(
        (
            ROOT / "alerts" / "rules" / f"{obj['metadata']['name'].removeprefix(NAME + '-')}.yaml"
        ).read_text()
    )
    obj["spec"]["groups"][0]["rules"][0]["expr"] += " > 1"
    assert obj["spec"] != source


def test_rules_configmap_is_the_source_files() -> None:
    data = one(render("plain-prometheus"), "ConfigMap", f"{NAME}-rules")["data"]
    assert data == {path.name: path.read_text() for path in RULES}


def test_one_dashboard_configmap_per_dashboard() -> None:
    configmaps = [
        obj
        for obj in of_kind(render("prometheus-operator"), "ConfigMap")
        if obj["metadata"]["name"].startswith(f"{NAME}-dashboard-")
    ]
    by_key = {key: obj for obj in configmaps for key in obj["data"]}
    assert sorted(by_key) == [path.name for path in DASHBOARDS]
    assert all(len(obj["data"]) == 1 for obj in configmaps)
    for path in DASHBOARDS:
        obj = by_key[path.name]
        assert obj["data"][path.name] == path.read_text(), f"{path.name} changed on the way"
        json.loads(obj["data"][path.name])
        assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert obj["metadata"]["annotations"]["grafana_folder"] == gen_deploy.DASHBOARD_FOLDER


def test_plain_prometheus_has_the_dashboards_too() -> None:
    names = {obj["metadata"]["name"] for obj in of_kind(render("plain-prometheus"), "ConfigMap")}
    assert {gen_deploy.dashboard_configmap_name(path) for path in DASHBOARDS} <= names


def test_generator_refuses_an_oversized_dashboard(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    raw = json.dumps({"panels": ["x" * gen_deploy.LAST_APPLIED_LIMIT]}).encode()
    with pytest.raises(gen_deploy.GenerateError, match="256 KiB"):
        gen_deploy._check_dashboard(path, raw)
    raw = json.dumps({"panels": ["x" * gen_deploy.CONFIGMAP_DATA_LIMIT]}).encode()
    with pytest.raises(gen_deploy.GenerateError, match="1 MiB"):
        gen_deploy._check_dashboard(path, raw)


def test_generator_refuses_a_rule_file_with_more_than_groups(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("groups: []\nextra: 1\n")
    with pytest.raises(gen_deploy.GenerateError, match="groups"):
        gen_deploy.prometheus_rule(path)


def test_generator_output_carries_the_header() -> None:
    for path, data in gen_deploy.generate().items():
        if path.parent.name == "prometheus-rules" or path.name == "kustomization.yaml":
            assert data.startswith(b"# Generated by scripts/gen_deploy.py"), path
