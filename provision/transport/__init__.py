"""How `provision` reaches a host: a narrow interface, one implementation per connection kind."""

from provision.transport.base import CommandResult, FileState, Transport

__all__ = ["CommandResult", "FileState", "Transport"]
