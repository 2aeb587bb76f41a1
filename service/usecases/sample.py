"""Use case: select training data for a diagnosis's weak slices (CLI ``sample``).

Two sources: labeled pretraining documents (:func:`sample_documents`, see
:mod:`slicelab.service.sampling`) or an instruction pool labeled with the evaluation taxonomy
(:func:`sample_pool`, see :mod:`slicelab.service.pool_sampling`). Both check every output file
before any work and write a manifest JSONL plus its summary or mixture spec and report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slicelab.service.diagnosis_file import load_diagnosis
from slicelab.service.errors import ConfigError
from slicelab.service.output import check_writable


def check_source(docs: Path | None, pool: Path | None, *, pool_options_given: bool) -> None:
    """Exactly one of ``docs`` and ``pool``; the pool options only with ``pool``.

    Raises:
        ConfigError: both or neither source, or pool options with ``docs``.
    """
    if (docs is None) == (pool is None):
        raise ConfigError("give exactly one of --docs (labeled documents) or --pool (instruction pool)")
    if docs is not None and pool_options_given:
        raise ConfigError("--labeler, --gold, --slice-key and --allow-repeats apply to --pool only")


def sample_pool(pool: Path, diagnosis: Path, budget_tokens: int, output: Path, *, labeler: str = "knn",
                extra_gold: tuple[Path, ...] = (), dedupe_against: Path | None = None, allow_repeats: bool = False,
                allow_ungated: bool = False, slice_keys: list[str] | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Select pool items for the weak slices; write the manifest, mixture spec and reports beside ``output``.

    Returns:
        ``(mixture spec, paths written)``.

    Raises:
        ConfigError: unwritable outputs, a bad diagnosis or pool (see
            :func:`slicelab.service.pool_sampling.sample_pool`).
    """
    from slicelab.service.pool_report import write_pool_outputs
    from slicelab.service.pool_sampling import sample_pool as select

    diag = load_diagnosis(diagnosis)
    stem = output.with_suffix("")
    check_writable(output, "-o", Path(f"{stem}.mixture.json"), Path(f"{stem}.report.md"), Path(f"{stem}.report.html"))
    manifest, spec = select(pool, diag, budget_tokens, labeler=labeler, extra_gold=extra_gold,
                            dedupe_against=dedupe_against, allow_repeats=allow_repeats, allow_ungated=allow_ungated,
                            slice_keys=slice_keys)
    return spec, list(write_pool_outputs(manifest, spec, output).values())


def sample_documents(docs: Path, diagnosis: Path, budget_tokens: int, output: Path, *,
                     dedupe_against: Path | None = None, allow_ungated: bool = False) -> tuple[dict[str, Any], list[Path]]:
    """Select labeled documents for the weak slices; write the manifest and its summary beside ``output``.

    Documents that near-duplicate an item of ``dedupe_against`` are dropped first (see
    :mod:`slicelab.service.leakage`).

    Returns:
        ``(summary, paths written)``: the summary (see :func:`slicelab.service.sampling.build_manifest`)
        with ``token_source`` and ``leakage`` (None without ``dedupe_against``) added.

    Raises:
        ConfigError: unwritable outputs, a bad diagnosis or documents, ``dedupe_against`` with
            documents that have no ``text`` column.
    """
    from slicelab.service.sampling import build_manifest, load_documents, write_manifest

    diag = load_diagnosis(diagnosis)
    stem = output.with_suffix("")
    check_writable(output, "-o", Path(f"{stem}.summary.json"), Path(f"{stem}.summary.md"))
    table, source = load_documents(docs)
    leakage = None
    if dedupe_against is not None:
        from slicelab.service.leakage import check_leakage

        if "text" not in table:
            raise ConfigError(f"--dedupe-against: --docs {docs} has no 'text' column to compare")
        leaks, leakage = check_leakage(zip(table["id"].astype(str), table["text"]), dedupe_against)
        table = table[~table["id"].astype(str).isin({lk.item_id for lk in leaks})].reset_index(drop=True)
    manifest, summary = build_manifest(table, diag, budget_tokens, allow_ungated=allow_ungated, token_source=source)
    summary["leakage"] = leakage
    paths = write_manifest(manifest, summary, output)
    return {**summary, "token_source": source}, list(paths.values())
