"""provision: declarative certificates and web-server bindings for server fleets."""

__version__ = "0.1.0"
