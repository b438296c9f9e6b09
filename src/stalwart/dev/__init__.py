"""Local stand-ins for production infrastructure: a RabbitMQ cluster on one host."""
