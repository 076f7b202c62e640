"""Every dashboard we ship, in the order the docs list them."""

from __future__ import annotations

from dashboards import cost, detail, fleet, health, mig_pods, node, working
from dashboards.panels import DashboardSpec

# One module per dashboard, each with `spec() -> DashboardSpec`.
MODULES = (fleet, node, detail, health, mig_pods, cost, working)


def specs() -> list[DashboardSpec]:
    """The dashboards, in the order of MODULES."""
    return [module.spec() for module in MODULES]
