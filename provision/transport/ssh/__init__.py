"""SSH hosts: the transport and its parts.

- ``connection``: opening the connection, its errors in one line, running commands;
- ``host_keys``: known_hosts, host certificates, ``--accept-new-host-keys``;
- ``sftp``: file operations as the login user, a few SFTP requests each;
- ``sudo``: the POSIX shell scripts ``become`` runs as root;
- ``transport``: ``SSHTransport``, which ties them together.

asyncssh is imported only by runs that reach an SSH host (the factory imports this package
then).
"""

from provision.transport.ssh.host_keys import HostKeyPolicy, known_hosts_name, user_known_hosts
from provision.transport.ssh.transport import SSHTransport

__all__ = ["HostKeyPolicy", "SSHTransport", "known_hosts_name", "user_known_hosts"]
