"""The local stack for `make run` and the tests: PostgreSQL, RabbitMQ, Prometheus and Alertmanager from
Debian's packages, each started on loopback under a state directory and stopped by PID."""
