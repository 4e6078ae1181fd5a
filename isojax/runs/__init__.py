"""The run infrastructure: stable keys and digests from names (`keys`), results tables with sidecars, provenance,
atomic writes and locks (`results`), the resumable sharded sweep engine and its store (`sweep`), output paths
checked before any compute (`outputs`) and the process settings entry points make (`runtime`)."""
