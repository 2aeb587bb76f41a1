"""Versioned prompt data: the taxonomy (YAML) and the judge prompt templates (YAML + Jinja).

This package holds data only; ``service.taxonomy`` and ``service.prompts`` load it.
"""

from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent
