"""The platform every layer stands on: environment values, the Redis client, logs, errors,
the HTTP edge (bodies, parsers, throttles, tokens, logins) and metrics recording. It imports no
other package of the project."""
