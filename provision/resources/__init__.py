"""One module per kind of thing a host has; each turns (desired, facts) into Changes."""
