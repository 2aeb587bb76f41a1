"""One exception hierarchy for slicelab.

Every message names the field, line or id involved, shows the bad value and,
where a fixed vocabulary applies, lists what is allowed.
"""

from __future__ import annotations


class SlicelabError(Exception):
    """Base class of every error slicelab raises on purpose."""


class ConfigError(SlicelabError):
    """Configuration that cannot work (unknown backend, missing model file, bad flag)."""


class TaxonomyError(SlicelabError):
    """A taxonomy or prompt file that does not load or validate."""


class UnknownLabelError(TaxonomyError):
    """A label id that is not in the taxonomy."""

    def __init__(self, axis: str, value: object, allowed: list[str]):
        self.axis, self.value, self.allowed = axis, value, allowed
        super().__init__(f"{axis}: unknown label {value!r}; allowed: {', '.join(allowed)}")


class RecordError(SlicelabError):
    """One input record that cannot become a sample; the rest of the file goes on.

    Attributes:
        line: 1-based line (JSONL/CSV) or element index (JSON array), or None.
        field: the offending field, or None.
    """

    def __init__(self, reason: str, *, line: int | None = None, field: str | None = None):
        self.reason, self.line, self.field = reason, line, field
        where = f"line {line}: " if line is not None else ""
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}{what}{reason}")


class InputFormatError(SlicelabError):
    """A whole input file that cannot be read (unknown format, unreadable file)."""


class JudgeConfigError(ConfigError):
    """The judge backend cannot serve the requested configuration."""
