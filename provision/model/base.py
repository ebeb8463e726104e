"""The one base every model shares: immutable, no key we do not know, and documented.

Each field's docstring (the string literal under it) is its description: pydantic reads it
(``use_attribute_docstrings``), so the JSON Schema that editors show carries the same text as
the code, and a test fails on any field left without one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=False, use_attribute_docstrings=True
    )
