"""Trust: the health of internal authorities, their revocation lists, and roots in trust
stores (issue 18)."""
