#!/usr/bin/env bash
# The container demo (`make docker-demo` runs it in the `code` service): generate a landing zone,
# run compare_engines over every day of it (both lineages, the Spark one on the cluster, and the
# asset checks that the two engines' rows are identical), then print the lakehouse's summary.
# The run is stored in the instance's PostgreSQL storage, so it shows in the webserver's UI.
# DEMO_SIZE: small (default), medium, large; DEMO_GENERATE_ARGS replaces the size's arguments.
set -euo pipefail

data="${ETL_POC_DATA_DIR:?ETL_POC_DATA_DIR must name the data directory}"
read -r -a generate_args <<< "${DEMO_GENERATE_ARGS:---size ${DEMO_SIZE:-small}}"

echo "== generate: ${generate_args[*]} into $data/landing"
etl-poc generate "${generate_args[@]}" --formats parquet --out "$data/landing" --no-progress

window="$(etl-poc window --data "$data")"
echo "== compare_engines over $window"
dg launch -m etl_poc.definitions --job compare_engines --partition-range "$window"

echo "== summary"
etl-poc summary --data "$data"
