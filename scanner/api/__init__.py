"""The scan endpoints of the REST API (PRODUCT.md's table)."""
