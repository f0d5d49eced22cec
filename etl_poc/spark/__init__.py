"""The Spark runtime: the session every Spark run uses, and a standalone cluster on this host."""
