# The project's commands. A newcomer needs two: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv from PATH, else the one `make install` puts into $(PYTHON)'s site-packages.
UV = $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN = $(UV) run --frozen
SIZE ?= small
REPEAT ?= 3
RATE ?= 0
ENGINES ?= polars,spark,duckdb
FORMATS ?= csv,parquet
# The caller's ETL_POC_DATA_DIR and DAGSTER_HOME are honoured; DATA_DIR=... overrides both.
DATA_DIR ?= $(or $(ETL_POC_DATA_DIR),data)
UI_PORT ?= 3000

export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export ETL_POC_DATA_DIR := $(DATA_DIR)

.PHONY: help install browser check-java demo docs test bench-warehouse bench-stream stream-demo test-fast lint format ui query generate bench bench-generator report cluster-up cluster-down clean docker-env docker-check docker-build docker-up docker-demo docker-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: check-java .venv/.installed browser ## install uv if missing, then the locked environment

# The browser test drives Debian's chromium (never a downloaded browser): installed when missing
# and this is root on Debian; otherwise that test skips, saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get install -y -q chromium >/dev/null 2>&1 \
			|| { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } \
		|| echo "note: no chromium (apt-get install chromium): the browser test will skip"

.venv/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || { \
		echo "uv not found: installing it with pip"; \
		$(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv; }
	$(UV) sync --frozen
	@touch $@

check-java: ## PySpark 4 needs Java 17 or newer
	@command -v java >/dev/null 2>&1 || { \
		echo "error: 'java' is not on PATH. PySpark 4 needs Java 17+:" >&2; \
		echo "  install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME and PATH." >&2; \
		exit 1; }
	@version=$$(java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); print v[1]; exit}'); \
	if [ -z "$$version" ] || [ "$$version" -lt 17 ]; then \
		echo "error: PySpark 4 needs Java 17+, found: $$(java -version 2>&1 | head -1)" >&2; exit 1; fi

# The demo data: a bulk month, then one file per day; its last sessions run past midnight into
# 2024-02-03, which every event of the landing zone lands in by its UTC date. make demo and
# make ui end the daily partitions there (ETL_POC_END_DATE; empty: open-ended, up to yesterday).
BULK_RANGE = 2024-01-01...2024-01-30
INCREMENTAL_DAYS = 2024-01-31,2024-02-01,2024-02-02,2024-02-03
DEMO_LAST_DAY = 2024-02-03
DEMO_LOG = $(DATA_DIR)/demo-dagster.log
RUN_CONFIG = etl_poc/defs/run_config

demo ui: export ETL_POC_END_DATE ?= $(DEMO_LAST_DAY)
demo: install ## small data through the three engines, launched through Dagster's daemon: a backfill of the bulk month, then day by day
	@mkdir -p $(DATA_DIR) && : > $(DEMO_LOG)
	$(RUN) etl-poc generate --size small --formats parquet --out $(DATA_DIR)/landing --no-progress
	@$(RUN) etl-poc demo --bulk $(BULK_RANGE) --days $(INCREMENTAL_DAYS) --log $(DEMO_LOG) \
		--job check_landing --job lakehouse_analytics \
		--job oltp_cdc:$(RUN_CONFIG)/oltp_through_bulk_month.yaml --job oltp_cdc --job build_warehouse \
		--job benchmark_report:$(RUN_CONFIG)/benchmark_bulk_month.yaml \
		--job maintain_lakehouse:$(RUN_CONFIG)/maintenance_now.yaml \
		|| { tail -30 $(DEMO_LOG); exit 1; }
	@echo && cat reports/benchmark-graph.md
	@echo
	@$(RUN) etl-poc summary --data $(DATA_DIR)
	@echo
	@$(RUN) etl-poc warehouse figures --data $(DATA_DIR)
	@echo
	@echo "Where to look:"
	@echo "  landing files and manifest:  $(DATA_DIR)/landing/ (manifest_small.json counts every defect)"
	@echo "  layers per engine and day:   $(DATA_DIR)/layers/<engine>/<layer>/"
	@echo "  Iceberg warehouse:           $(DATA_DIR)/warehouse/ (catalog.db: SQLite catalog 'lakehouse')"
	@echo "  Dagster run logs:            $(DEMO_LOG)"
	@echo "  engine comparison:           reports/benchmark-graph.{md,json,png}, and the benchmark asset in the UI"
	@echo "  analytics answers:           in the UI on clickstream_analytics, or DuckDB tables analytics_* in $(DATA_DIR)/analytics.duckdb"
	@echo "  operational database:        $(DATA_DIR)/postgres/ (embedded PostgreSQL), its change logs in the Iceberg namespace oltp"
	@echo "  the warehouse (dbt):         $(DATA_DIR)/warehouse.duckdb (schemas raw, staging, intermediate, marts); make docs for dbt's docs"
	@echo "  ad-hoc SQL:                  make query SQL=\"SELECT device, count(*) FROM polars_events GROUP BY 1\""
	@echo "  Dagster UI (lineage, metadata, checks): make ui, then http://127.0.0.1:$(UI_PORT)"

docs: install ## dbt's documentation of the warehouse (models, columns, tests, lineage), from make demo's data
	$(RUN) etl-poc warehouse docs --data $(DATA_DIR)

# The tests that open embedded ClickHouse (chdb, marker `chdb`) run in a process of their own:
# ClickHouse installs its own signal handlers, and in the suite's long-lived process (with
# Debezium's in-process JVM, Spark's gateway, DuckDB, a browser) one crashed it with SIGSEGV.
test: install ## the whole test suite (what CI runs)
	$(RUN) pytest -m "not chdb"
	$(RUN) pytest -m chdb

test-fast: install ## the tests that need no JVM and no large data
	$(RUN) pytest -m "not spark and not slow and not chdb"
	$(RUN) pytest -m "chdb and not spark and not slow"

lint: install ## ruff and black, exactly as pre-commit runs them
	$(RUN) pre-commit run --all-files --show-diff-on-failure

format: install ## fix what ruff and black can fix
	$(RUN) ruff check --fix .
	$(RUN) black .

ui: install ## Dagster's UI on 127.0.0.1
	$(RUN) dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

generate: install ## make generate SIZE=small|medium|large [FORMATS=csv,parquet]
	$(RUN) etl-poc generate --size $(SIZE) --formats $(FORMATS) --out $(DATA_DIR)/landing

query: install ## make query SQL="SELECT ...": DuckDB over <engine>_events and <engine>_rejects
	@$(RUN) etl-poc query --data $(DATA_DIR) "$(SQL)"

BENCH_ARGS ?=
bench: install ## make bench SIZE=medium REPEAT=3 [ENGINES=polars,spark,duckdb] [BENCH_ARGS="--label L --set K=V --cpus 0"]: backfills, Dagster overhead, I/O floor; JSON in measurements/
	$(RUN) etl-poc bench pipeline --size $(SIZE) --repeat $(REPEAT) --engines $(ENGINES) $(BENCH_ARGS)

bench-generator: install ## make bench-generator SIZE=medium REPEAT=3: the generator, in fresh processes
	$(RUN) etl-poc bench generator --size $(SIZE) --repeat $(REPEAT) --formats parquet

bench-warehouse: install ## make bench-warehouse SIZE=small: CDC per day, each dbt model's time, the marts' query latency (measurements/warehouse-<size>.*)
	$(RUN) python -m etl_poc.bench.warehouse --size $(SIZE)

bench-stream: install ## make bench-stream SIZE=small: the producer and broker under load, each streaming engine's throughput, latency at a fixed rate, lag, memory, live queries (measurements/stream-<size>.*)
	$(RUN) python -m etl_poc.bench.stream --size $(SIZE)

stream-demo: install ## the speed layer after make demo: a Tansu broker, both streaming sessionizers as services, every landing row produced (RATE=events/s, 0: at full speed), then the live funnel and the reconciliation with the batch tables
	@test -f $(DATA_DIR)/warehouse/catalog.db || { echo "no batch tables under $(DATA_DIR): run make demo first" >&2; exit 1; }
	@rm -rf $(DATA_DIR)/stream
	$(RUN) etl-poc stream demo --data $(DATA_DIR) --rate $(RATE)

report: install ## reports/REPORT.md (and charts) from the measured measurements/benchmark-<label>.json
	$(RUN) etl-poc report --measurements measurements --out reports

WORKERS ?= 2
cluster-up: install ## make cluster-up WORKERS=2: a Spark standalone master and workers on 127.0.0.1:7077
	$(RUN) etl-poc cluster up --workers $(WORKERS)

cluster-down: ## stop the Spark standalone cluster, leaving no process behind
	$(RUN) etl-poc cluster down

# The containers (docker/): Docker Engine with Compose v2. COMPOSE="docker-compose" for v1 (no --wait).
COMPOSE ?= docker compose
DOCKER_COMPOSE = $(COMPOSE) -p etl-poc -f docker/compose.yaml --env-file docker/.env

docker-env: docker/.env ## docker/.env from docker/.env.example, with a random PostgreSQL password

docker/.env:
	@password=$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(16))'); \
		sed "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$$password/" docker/.env.example > $@
	@chmod 600 $@
	@echo "wrote docker/.env with a random PostgreSQL password (git-ignored); edit it for ports and sizes"

docker-check:
	@$(COMPOSE) version >/dev/null 2>&1 || { \
		echo "error: '$(COMPOSE)' does not answer: the containers need Docker Engine with Compose v2" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { \
		echo "error: no Docker engine answers ('docker info' fails): start it, or use make demo without containers" >&2; exit 1; }

docker-build: docker-check docker/.env ## the image etl-poc:latest: Java 17, uv, the locked environment, the project
	$(DOCKER_COMPOSE) build

docker-up: docker-check docker/.env ## PostgreSQL, a Spark master and 2 workers, Dagster's code location, daemon, webserver
	$(DOCKER_COMPOSE) up -d --wait
	@$(DOCKER_COMPOSE) ps
	@ui=$$(sed -n 's/^DAGSTER_UI_PORT=//p' docker/.env); spark=$$(sed -n 's/^SPARK_MASTER_UI_PORT=//p' docker/.env); \
		echo "Dagster UI: http://127.0.0.1:$${ui:-3000}   Spark master UI: http://127.0.0.1:$${spark:-8080}"; \
		echo "then: make docker-demo"

docker-demo: docker-check ## in the running containers: generate, compare_engines (Spark on the cluster), the summary
	$(DOCKER_COMPOSE) exec code bash docker/demo.sh

docker-down: docker-check ## stop and remove the containers (the volumes stay; VOLUMES=1 removes them too)
	$(DOCKER_COMPOSE) down $(if $(VOLUMES),--volumes)

clean: ## remove generated data, reports, the Dagster instance and caches (keeps .venv)
	rm -rf $(DATA_DIR)/landing $(DATA_DIR)/layers $(DATA_DIR)/warehouse $(DATA_DIR)/demo-dagster.log
	rm -rf $(DATA_DIR)/stream
	rm -rf $(DATA_DIR)/oltp $(DATA_DIR)/postgres $(DATA_DIR)/postgres.lock $(DATA_DIR)/cdc $(DATA_DIR)/warehouse.duckdb* $(DATA_DIR)/warehouse-dbt
	rm -rf reports/*.json reports/*.md reports/*.png bench-data spark-cluster
	find dagster_home -mindepth 1 -maxdepth 1 ! -name .gitkeep ! -name dagster.yaml -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
