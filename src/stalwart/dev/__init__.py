"""Local stand-ins for production infrastructure: a RabbitMQ cluster, PostgreSQL and
NATS servers of their own on one host."""
