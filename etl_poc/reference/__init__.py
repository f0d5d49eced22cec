"""Reference data the pipeline and the generator share (the IP-to-country range table)."""
