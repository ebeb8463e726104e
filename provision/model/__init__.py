"""Typed, frozen models of what a playbook and an inventory say."""
