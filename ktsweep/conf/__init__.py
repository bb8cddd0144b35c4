"""ktsweep's config tree: YAML files per group plus their typed schema (``ktsweep.conf.schema``)."""
