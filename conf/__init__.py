"""ktsweep's config tree: YAML files per group plus their typed schema (``conf.schema``)."""
