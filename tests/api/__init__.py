"""The scan endpoints of the REST API."""
