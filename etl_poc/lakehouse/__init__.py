"""All file and table I/O: the landing zone now; Iceberg tables and partition writes later."""
