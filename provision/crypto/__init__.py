"""Pure certificate functions: build, compare, encode, decode, inspect. No I/O here."""
