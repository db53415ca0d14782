"""Getting gateway records in: decoding, validation and dead letters."""
