# plantsync — every target sets up what it needs: a fresh Debian/Ubuntu machine with
# Python 3.11+ needs nothing else. `make demo` runs the agent on a simulated plant;
# `make test` runs lint, type check and the whole test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: demo test lint typecheck unit venv system-deps demo-deps test-deps clean bench soak \
        chaos deb package-test fleet promtool

# The demo needs the agent's own dependencies and Mosquitto, nothing of the tests' (no browser,
# no faketime, no dev tools): a fresh clone reaches its first machine message sooner.
demo: $(RUNTIME) demo-deps
	$(BIN)/plantsync demo

test: $(STAMP) system-deps lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check plantsync tests bench chaos
	$(BIN)/ruff format --check plantsync tests bench chaos

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system-deps
	$(BIN)/pytest -q

venv: $(STAMP)

# The virtual environment, with every version pinned in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "plantsync needs Python 3.11 or newer"'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { \
	  echo "python3 -m venv is missing: apt-get install python3-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The agent's runtime dependencies only (what `make demo` needs); `$(STAMP)` adds the dev tools.
$(RUNTIME): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "plantsync needs Python 3.11 or newer"'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { \
	  echo "python3 -m venv is missing: apt-get install python3-venv"; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e .
	touch $(RUNTIME)

# Installs Debian packages $(1) when we can (root + apt-get); otherwise names them and fails.
# $(2) says what they are for.
define apt_install
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
  echo "installing $(1) (Debian packages) ..."; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
else \
  echo "$(1) is needed ($(2)). Install it with: sudo apt-get install $(1)"; exit 1; \
fi
endef

# Mosquitto is the broker the tests and the demo run: the demo needs nothing else.
demo-deps:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  $(call apt_install,mosquitto,the MQTT broker of the tests and the demo); }

# Chromium (the distribution's, never `playwright install`) runs the status page's browser
# tests; libfaketime steps the agent's wall clock in the chaos run (its clock-jump fault).
test-deps: demo-deps
	@[ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/truetype/liberation ] || { \
	  $(call apt_install,chromium fonts-liberation,the status page's browser test); }
	@[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || \
	  [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ] || { \
	  $(call apt_install,faketime,the chaos run's clock jumps); }

# Everything any target here needs (the tests, the benches, the chaos run).
system-deps: demo-deps test-deps

# Figures, not pass/fail: each prints the agent's number next to a ceiling measured in the same run.
bench: $(STAMP) system-deps
	$(BIN)/python -m bench.run $(if $(SCENARIOS),--scenario $(SCENARIOS))

# The footprint scenario: idle RSS with 10,000 monitored items, then RSS growth over a soak at
# 1,000 changes/s (SOAK_MINUTES, default 30). Not part of `make bench`.
SOAK_MINUTES ?= 30
soak: $(STAMP) system-deps
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m bench.run --scenario footprint

# The fleet scenario (docs/scaling.md): FLEET_AGENTS (default 20) real agent processes against
# one Mosquitto; the hub down for FLEET_OUTAGE_SECONDS (default 60), then a broker restart that
# loses every session. About four minutes on loopback. Not part of `make bench`.
FLEET_AGENTS ?= 20
FLEET_OUTAGE_SECONDS ?= 60
fleet: $(STAMP) system-deps
	FLEET_AGENTS=$(FLEET_AGENTS) FLEET_OUTAGE_SECONDS=$(FLEET_OUTAGE_SECONDS) \
	  $(BIN)/python -m bench.run --scenario fleet

# promtool and prometheus, for the tests of packaging/prometheus (promtool check rules / test
# rules, and a real Prometheus on loopback firing an alert against a test agent), taken out of
# Debian's prometheus package into .venv/bin. The package is NOT installed: installing it would
# start a Prometheus server on :9090 on a machine with systemd. Optional: without them those
# tests are skipped, and say so.
promtool: $(BIN)/promtool

$(BIN)/promtool: | $(STAMP)
	@command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || { \
	  echo "promtool: no apt-get here; put Prometheus's promtool on PATH by hand"; exit 1; }
	rm -rf $(VENV)/promtool-deb && mkdir -p $(VENV)/promtool-deb
	cd $(VENV)/promtool-deb && apt-get download -q prometheus
	dpkg-deb -x $(VENV)/promtool-deb/prometheus_*.deb $(VENV)/promtool-deb/root
	mv $(VENV)/promtool-deb/root/usr/bin/prometheus $(BIN)/prometheus
	mv $(VENV)/promtool-deb/root/usr/bin/promtool $@
	rm -rf $(VENV)/promtool-deb
	$@ --version

# A bounded fault-injection run (CHAOS_MINUTES, default 10) under load both ways; prints the
# table of faults injected and messages sent / delivered / lost. Root for the tmpfs (disk full).
# See docs/reliability.md.
CHAOS_MINUTES ?= 10
chaos: $(STAMP) system-deps
	$(BIN)/python -m chaos.run --minutes $(CHAOS_MINUTES)

# The Debian package (dh-virtualenv) in dist/; build dependencies are installed when root,
# otherwise named. See docs/install.md.
VERSION := $(shell sed -nE 's/^version = "(.*)"/\1/p' pyproject.toml)
DEB     := dist/plantsync_$(VERSION)-1_$(shell dpkg --print-architecture 2>/dev/null || echo amd64).deb

deb:
	packaging/build-deb.sh dist

# Installs, runs, upgrades and purges the package on THIS machine: root only, a few minutes,
# never part of `make test`.
package-test: $(STAMP) system-deps deb
	@[ "$$(id -u)" = 0 ] || { echo "make package-test installs a package: run it as root"; exit 1; }
	$(BIN)/python -m tests.package.install_upgrade_remove $(DEB)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
