"""Where results go: ClickHouse tables and JSON-lines files."""
