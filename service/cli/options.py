"""Options shared by several commands, each defined once: same name, same meaning, same help everywhere.

A command declares ``judge_url: JudgeUrl = None``; the default stays in the command's signature
(and is the same in every command that has the option).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# --------------------------------------------------------------------------- the judge
JudgeUrl = Annotated[Optional[str], typer.Option(
    "--judge-url", envvar="SLICELAB_JUDGE_URL",
    help="OpenAI-compatible base URL (e.g. vLLM's http://HOST:8000/v1); default: embedded judge")]
JudgeModel = Annotated[Optional[str], typer.Option("--judge-model", envvar="SLICELAB_JUDGE_MODEL",
                                                   help="served model name")]
JudgeBackend = Annotated[Optional[str], typer.Option(
    "--judge-backend", envvar="SLICELAB_JUDGE_BACKEND",
    help="embedded | openai | vllm (offline vllm.LLM on this machine's GPU, --judge-model names the model); "
         "default: openai with --judge-url, else embedded")]
JudgeOutputForm = Annotated[Optional[str], typer.Option(
    "--judge-output-form",
    help="embedded judge: json (a JSON object; default) or values (only the label ids, about 6x fewer output "
         "tokens; another judge configuration, calibrated on its own)")]
JudgeConcurrency = Annotated[int, typer.Option("--judge-concurrency", min=1,
                                               help="with --judge-url: requests each worker keeps in flight")]
MaxTokens = Annotated[Optional[int], typer.Option("--max-tokens", min=16, help="judge output tokens per label")]
MaxAttempts = Annotated[Optional[int], typer.Option("--max-attempts", min=1,
                                                    help="judge attempts per item on invalid output")]
NoCache = Annotated[bool, typer.Option(
    "--no-cache", help="bypass the Redis label cache: every item costs a judge call, no label is stored")]
SelfConsistency = Annotated[int, typer.Option(
    "--self-consistency", min=0,
    help="K > 0: the self-consistent judge (K samples, majority vote per axis, vote share as confidence); "
         "calibrate measures it as its own labeler (judge_sc), label-benchmark labels every axis with it "
         "(overriding --labeler)")]
ScTemperature = Annotated[float, typer.Option("--sc-temperature", min=0.0,
                                              help="sampling temperature of the self-consistent judge's K samples")]

# --------------------------------------------------------------------------- queue and workers
Workers = Annotated[int, typer.Option(
    "--workers", min=0,
    help="local worker processes to start (default 1 in every command; 0: rely on `slicelab worker` elsewhere)")]
Queue = Annotated[str, typer.Option("--queue", help="RQ queue that `slicelab worker`s elsewhere listen on")]

# --------------------------------------------------------------------------- inputs, gate and output
Limit = Annotated[Optional[int], typer.Option(
    "--limit", min=1, help="label only the first N records (of the shards in the order given, for label-shard)")]
Gate = Annotated[Optional[Path], typer.Option("--gate", exists=True, dir_okay=False,
                                              help="gate thresholds (YAML; default: calibration/gate.yaml)")]
DocGold = Annotated[Optional[Path], typer.Option(
    "--gold", exists=True, dir_okay=False, help="document gold set (default: calibration/gold/doc_gold_v1.jsonl)")]
NBoot = Annotated[int, typer.Option("--n-boot", min=50, help="bootstrap resamples of the kappa intervals")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout (and nothing else there)")]
AllowUngated = Annotated[bool, typer.Option(
    help="also use axes that failed or never had calibration (recorded in the output)")]
