# The one entry point for people and CI. Every target creates what it needs, so each works on a
# fresh machine: `make run` for the simulated node, `make test` for everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PORT ?= 9445
SCENARIO ?= a100-mig

.PHONY: bench-collection fleet image demo help venv run test lint typecheck unit system-deps fake-driver generate check-generated \
        test-gpu test-alerts bench soak clean

help:
	@echo "make run        set up and run the exporter on the simulated 8-GPU node (:$(PORT))"
	@echo "make test       install everything the tests need and run lint, types and all tests"
	@echo "make generate   regenerate committed artifacts (metric reference, alert table, dashboards, compat rules, deploy/)"
	@echo "make test-alerts  promtool tests of alerts/ and the end-to-end paging tests"
	@echo "make test-gpu   run tests/gpu on a machine with a real NVIDIA driver"
	@echo "make image      build the container image with podman (local stand-in base) and print its sizes"
	@echo "make demo       simulated nodes + real Prometheus and Alertmanager on loopback (Ctrl-C stops)"
	@echo "make bench      ours vs nvitop-exporter side by side (RUNS=2; LONG=1 adds RSS after 10 min; docs/performance.md)"
	@echo "make bench-collection  CPU and NVML calls per collection per scenario (BEFORE=<old checkout> for the same figures there)"
	@echo "make fleet      a simulated fleet scraped by a real Prometheus: series, samples/s, rule and query cost"
	@echo "make soak       30-minute soak under faults, Xids and scrapers (MINUTES=30)"

$(PY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(PY)

venv: $(PY)

image: $(PY) system-deps
	$(PY) scripts/image.py build --report

demo: $(PY) system-deps fake-driver
	$(PY) scripts/demo.py

run: $(PY)
	$(BIN)/gpu-node-exporter --simulate=$(SCENARIO) --web.listen-address=:$(PORT) --log.format=console

# Debian packages the end-to-end tests use (promtool, Prometheus, Alertmanager). Installed only
# when we are root and they are missing; otherwise the tests that need them say so loudly.
# podman, buildah, runc and mmdebstrap build and run the image (tests/image, make image);
# chromium loads the status page in tests/test_statuspage.py.
SYSTEM_TOOLS := promtool prometheus-alertmanager podman buildah runc mmdebstrap chromium
SYSTEM_PACKAGES := prometheus prometheus-alertmanager podman buildah runc mmdebstrap chromium

system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages: $(SYSTEM_PACKAGES) (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "WARNING: missing$$missing and not root: the tests that need them fail under CI=true"; fi; \
	fi
	@# Debian starts the services it installs; the tests start their own instances.
	@-systemctl stop prometheus prometheus-alertmanager >/dev/null 2>&1 || true

fake-driver: $(PY)
	$(PY) -m exporter.fakenvml build

lint: $(PY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY)
	$(BIN)/mypy
	$(BIN)/mypy --strict scripts
	$(BIN)/mypy --strict benchmarks

generate: $(PY)
	$(PY) -m exporter.docs README.md
	$(PY) scripts/gen_alert_docs.py README.md
	$(PY) -m dashboards
	$(PY) scripts/gen_dcgm_compat.py
	$(PY) scripts/gen_deploy.py

check-generated: $(PY)
	$(PY) -m exporter.docs --check README.md
	$(PY) scripts/gen_alert_docs.py --check README.md
	$(PY) -m dashboards --check
	$(PY) scripts/gen_dcgm_compat.py --check
	$(PY) scripts/gen_deploy.py --check

unit: $(PY) fake-driver
	$(PY) -m pytest --ignore=tests/gpu -q

test: $(PY) system-deps fake-driver lint typecheck check-generated unit

# The alerting half on its own: promtool checks and unit tests of alerts/, then the end-to-end
# pages through a real Prometheus and Alertmanager (Debian packages, see system-deps).
test-alerts: $(PY) system-deps fake-driver
	$(PY) -m pytest tests/alerts tests/e2e -v

test-gpu: $(PY)
	$(PY) -m pytest tests/gpu -v

bench: $(PY) fake-driver
	$(PY) benchmarks/compare.py $(if $(RUNS),--runs $(RUNS)) $(if $(LONG),--long)

bench-collection: $(PY) fake-driver
	$(PY) benchmarks/collection.py $(if $(BEFORE),--repo $(BEFORE)) $(if $(PROCESSES),--processes)

fleet: $(PY) system-deps fake-driver
	$(PY) benchmarks/fleet.py

soak: $(PY) fake-driver
	$(PY) benchmarks/soak.py --minutes $${MINUTES:-30}

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
