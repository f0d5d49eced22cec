#!/usr/bin/env bash
# Run once by the postgres image on an empty data volume: the Iceberg SQL catalog's database,
# beside Dagster's ($POSTGRES_DB). PyIceberg creates its tables in it on first use.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=db="${ICEBERG_DB:-iceberg}" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
