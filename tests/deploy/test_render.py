"""deploy/ renders with the real `kubectl kustomize`, in every way docs/install.md combines it.

- every variant (base, overlays, the example, overlays with components) renders;
- every directory under deploy/overlays and deploy/examples is exercised by some variant, so
  a new overlay cannot escape these tests; the ones meant to be combined are Components;
- the base and the plain-Prometheus overlay hold no custom resources (they install on a
  cluster without the Prometheus Operator); the operator overlay has its ServiceMonitor and
  PrometheusRules;
- every namespaced object lands in the gpu-node-exporter namespace (a missing namespace would
  go to whatever namespace kubectl's context points at);
- the image tag is the version in pyproject.toml;
- every object fits the 256 KiB that client-side apply stores in its last-applied annotation.
"""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml

from tests.deploy.manifests import (
    BY_NAME,
    DEPLOY,
    NAME,
    NAMESPACE,
    ROOT,
    VARIANT_NAMES,
    VARIANTS,
    Obj,
    container,
    is_custom,
    of_kind,
    one,
    render,
)

CLUSTER_SCOPED = {"Namespace"}
COMPONENTS = {"tls", "basic-auth", "processes", "no-host-network", "scrape-annotations"}
LAST_APPLIED_LIMIT = 256 * 1024


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_variant_renders(name: str) -> None:
    objs = render(name)
    assert objs, f"{name} rendered nothing"
    for obj in objs:
        assert {"apiVersion", "kind", "metadata"} <= set(obj), obj
    kinds = {obj["kind"] for obj in objs}
    assert {"Namespace", "ServiceAccount", "DaemonSet", "Service"} <= kinds


def test_every_overlay_and_example_is_rendered() -> None:
    used = {path for variant in VARIANTS for path in (*variant.resources, *variant.components)}
    dirs = {
        f"{parent}/{path.name}"
        for parent in ("overlays", "examples")
        for path in (DEPLOY / parent).iterdir()
        if path.is_dir()
    }
    assert dirs - used == set(), f"never rendered by tests/deploy: {sorted(dirs - used)}"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_combinable_overlays_are_components(component: str) -> None:
    kustomization = yaml.safe_load(
        (DEPLOY / "overlays" / component / "kustomization.yaml").read_text()
    )
    assert kustomization["kind"] == "Component"
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"


def test_scrape_overlays_are_kustomizations() -> None:
    for overlay in ("prometheus-operator", "plain-prometheus"):
        kustomization = yaml.safe_load(
            (DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text()
        )
        assert kustomization["kind"] == "Kustomization", overlay


@pytest.mark.parametrize("name", ["base", "plain-prometheus", "plain+tls+basic-auth"])
def test_installs_without_the_prometheus_operator(name: str) -> None:
    custom = [f"{obj['kind']}/{obj['metadata']['name']}" for obj in render(name) if is_custom(obj)]
    assert custom == [], f"{name} needs CRDs: {custom}"


def test_operator_overlay_has_its_custom_resources() -> None:
    objs = render("prometheus-operator")
    one(objs, "ServiceMonitor")
    rules = of_kind(objs, "PrometheusRule")
    sources = sorted(path.stem for path in (ROOT / "alerts" / "rules").glob("*.yaml"))
    assert sorted(obj["metadata"]["name"] for obj in rules) == [f"{NAME}-{s}" for s in sources]


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_everything_in_one_namespace(name: str) -> None:
    wrong = []
    for obj in render(name):
        namespace = obj["metadata"].get("namespace")
        expected = None if obj["kind"] in CLUSTER_SCOPED else NAMESPACE
        if namespace != expected:
            wrong.append(f"{obj['kind']}/{obj['metadata']['name']}: {namespace!r}")
    assert wrong == [], f"objects outside {NAMESPACE}: {wrong}"


def test_image_tag_is_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in VARIANT_NAMES:
        image = container(one(render(name), "DaemonSet"))["image"]
        assert image == f"{NAME}:{version}", f"{name}: image {image}, pyproject says {version}"


def last_applied_size(obj: Obj) -> int:
    """What `kubectl apply` (client-side) writes into the last-applied annotation."""
    return len(json.dumps(obj, separators=(",", ":")))


@pytest.mark.parametrize("name", ["prometheus-operator", "plain-prometheus"])
def test_objects_fit_client_side_apply(name: str) -> None:
    sizes = {f"{o['kind']}/{o['metadata']['name']}": last_applied_size(o) for o in render(name)}
    too_big = {key: size for key, size in sizes.items() if size >= LAST_APPLIED_LIMIT}
    assert too_big == {}, f"over 256 KiB, only server-side apply would work: {too_big}"


def test_size_check_catches_a_large_object() -> None:
    big = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"x": "y" * LAST_APPLIED_LIMIT}}
    assert last_applied_size(big) >= LAST_APPLIED_LIMIT


def test_variant_table_matches_its_files() -> None:
    """The variants name real directories (a typo would render the wrong thing or fail)."""
    for variant in BY_NAME.values():
        for path in (*variant.resources, *variant.components):
            assert (DEPLOY / path / "kustomization.yaml").is_file(), f"{variant.name}: {path}"


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_every_object_carries_the_name_label(name: str) -> None:
    """So `kubectl get ... -l app.kubernetes.io/name=gpu-node-exporter` finds all of it."""
    unlabelled = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in render(name)
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") != NAME
    ]
    assert unlabelled == []
