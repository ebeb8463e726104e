"""Talking to an ACME (RFC 8555) CA through certbot's ``acme`` package: the account kept on the
controller, DNS-01 hooks and their propagation, and one order from new to certificate."""
