# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-faults lint unit integration cluster redis browser install clean \
	bench-quality bench-segments bench-tools bench-api bench-throughput

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

# redis-server comes from the system: installed with apt-get when we are root, else explained.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server with apt-get ..."; \
	    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing: install it (sudo apt-get install redis-server, or brew install redis)"; \
	    exit 1; \
	  fi; }

# Headless Chromium for the dashboard test (skipped with a reason where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium with apt-get ..."; \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null || true; \
	  else \
	    echo "chromium is missing: the dashboard test will be skipped"; \
	  fi; }

demo: install redis
	$(BIN)/crm dev --simulate 300

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy schemas online_models feature_store stream agents api simulator crm load_tests
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -m "not integration" -q

integration: install redis
	$(BIN)/pytest -m integration -q

# Three Apache Kafka brokers and a Redis Cluster, started by the fixtures (Java 17, Maven).
cluster: install redis
	CRM_TEST_CLUSTER=1 $(BIN)/pytest -m cluster -q

test: install redis browser lint
	$(BIN)/pytest -q

# The fault matrix (tests/integration/test_fault_matrix.py): worker, Redis and broker faults
# while a simulated shop streams at 1,000 events/s. CI runs it on Apache Kafka
# (CRM_TEST_KAFKA=apache make test-faults).
test-faults: install redis
	$(BIN)/pytest -m faults -q -s tests/integration/test_fault_matrix.py

bench-quality: install redis
	$(BIN)/python -m load_tests.bench_quality

bench-segments: install redis
	$(BIN)/python -m load_tests.bench_segments

bench-throughput: install redis
	$(BIN)/python -m load_tests.bench_throughput --profile

# vegeta (Go, constant-rate load) for bench-api, built once into ~/.cache/crm-bench/bin
# (CRM_BENCH_TOOLS) from the Go module proxy; without Go the benchmark uses its Python client.
bench-tools: install
	$(BIN)/python -m load_tests.bench_api --install-client

bench-api: install redis
	$(BIN)/python -m load_tests.bench_api --rate 1000 --duration 20

clean:
	rm -rf $(VENV) .crm .pytest_cache .mypy_cache .ruff_cache test-artifacts
