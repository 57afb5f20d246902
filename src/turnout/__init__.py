"""turnout: high availability for MySQL/MariaDB replication."""

__version__ = "0.1.0"
