"""Lint a training configuration for the mistakes that stop a model from learning to end its answers.

A fine-tuned model that writes the right answer and then runs on into an invented next turn
has usually never been trained on its end-of-sequence (EOS) token. :func:`lint_training_config`
reads a folder holding a Hugging Face tokenizer (``tokenizer_config.json``,
``special_tokens_map.json``, optionally ``generation_config.json``) and optionally a training
YAML (LLaMA-Factory or axolotl style), and reports:

| id | severity | what |
|---|---|---|
| ``pad-is-eos`` | error | the pad token is the EOS token: a collator that masks padding labels by token id (``labels[labels == pad_token_id] = -100``, e.g. ``DataCollatorForLanguageModeling``) masks every EOS label too, so the model never learns to stop (transformers issue #23530) |
| ``chat-template-without-eos`` | error | the chat template never writes the EOS token (nor ``eos_token``), and no turn-end token of the template is a generation stop token: trained turns do not end in a token generation stops on |
| ``eos-not-in-loss`` | error | the training YAML keeps EOS out of the loss: axolotl ``train_on_eos: none``, or ``mask_eos: true`` / ``train_on_eos: false`` |
| ``pad-token-missing`` | warning | no pad token: trainers then commonly set ``pad_token = eos_token``, which is ``pad-is-eos`` |
| ``turn-end-not-eos`` | warning | the template ends turns with a token other than EOS; generation must stop on it too (``generation_config.json`` ``eos_token_id`` list, or the evaluation's stop tokens) |

Each finding has ``id``, ``severity``, ``message`` and ``evidence`` (file, field and value).
:func:`attach_findings` cites them in a diagnosis whose ``non_data`` verdict is about
termination; without a termination symptom they are reported, not turned into a verdict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from slicelab.service.errors import ConfigError

#: Checks a termination verdict names; the lint is cited as its evidence.
TERMINATION_CHECKS = ("eos_loss_mask", "stop_tokens")
_TURN_END = re.compile(r"<\|im_end\|>|<\|eot_id\|>|<end_of_turn>|<\|end\|>|</s>|<\|endoftext\|>|<\|end_of_text\|>")


def _token(v: Any) -> str | None:
    """A special token as text: a string, or ``{"content": ...}`` (AddedToken)."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) and v else None


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_yaml(directory: Path) -> tuple[Path | None, dict[str, Any]]:
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if isinstance(data, dict):
            return path, data
    return None, {}


def _template_text(v: Any) -> str | None:
    """``chat_template``: a string, or a list of ``{"name", "template"}`` (all joined)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "\n".join(str(t.get("template", "")) for t in v if isinstance(t, dict)) or None
    return None


def lint_training_config(directory: str | Path) -> dict[str, Any]:
    """Read a tokenizer / training-config folder and list the termination findings.

    Args:
        directory: a folder with ``tokenizer_config.json`` and/or ``special_tokens_map.json``
            (optionally ``generation_config.json`` and one training ``*.yaml``).

    Returns:
        ``{"dir", "files": [read], "tokens": {"eos", "pad", "turn_end"}, "findings": [{"id", "severity",
        "message", "evidence"}]}``.

    Raises:
        ConfigError: the folder does not exist, holds neither tokenizer file, or a file is unreadable.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"--training-config {d}: not a folder")
    tok = _read_json(d / "tokenizer_config.json")
    special = _read_json(d / "special_tokens_map.json")
    gen = _read_json(d / "generation_config.json")
    yaml_path, train = _read_yaml(d)
    if tok is None and special is None:
        raise ConfigError(f"--training-config {d}: no tokenizer_config.json or special_tokens_map.json")
    files = [str(d / n) for n, v in (("tokenizer_config.json", tok), ("special_tokens_map.json", special),
                                    ("generation_config.json", gen)) if v is not None]
    files += [str(yaml_path)] if yaml_path else []
    tok, special, gen = tok or {}, special or {}, gen or {}
    overrides = train.get("special_tokens") if isinstance(train.get("special_tokens"), dict) else {}
    eos = _token(overrides.get("eos_token")) or _token(tok.get("eos_token")) or _token(special.get("eos_token"))
    pad = _token(overrides.get("pad_token")) or _token(tok.get("pad_token")) or _token(special.get("pad_token"))
    where_pad = "special_tokens (training YAML)" if _token(overrides.get("pad_token")) else "pad_token"
    template = _template_text(train.get("chat_template_jinja")) or _template_text(tok.get("chat_template"))
    turn_end = _turn_end(template)
    findings = _token_findings(eos, pad, where_pad)
    findings += _template_findings(template, eos, turn_end, gen, tok)
    findings += _loss_findings(train, yaml_path)
    return {"dir": str(d), "files": files, "tokens": {"eos": eos, "pad": pad, "turn_end": turn_end},
            "findings": findings}


def _finding(fid: str, severity: str, message: str, **evidence: Any) -> dict[str, Any]:
    return {"id": fid, "severity": severity, "message": message, "evidence": evidence}


def _token_findings(eos: str | None, pad: str | None, where_pad: str) -> list[dict[str, Any]]:
    out = []
    if eos and pad and pad == eos:
        out.append(_finding("pad-is-eos", "error",
                            f"the pad token is the EOS token {eos!r}: a collator that masks padding labels by token id "
                            "masks every EOS label too, so the model never learns to stop (transformers issue #23530); "
                            "use a distinct pad token", field=where_pad, pad_token=pad, eos_token=eos))
    elif not pad:
        out.append(_finding("pad-token-missing", "warning",
                            "no pad token: trainers then commonly set pad_token = eos_token, which masks EOS labels "
                            "with the padding", field="pad_token", eos_token=eos))
    return out


def _turn_end(template: str | None) -> str | None:
    if not template:
        return None
    found = _TURN_END.findall(template)
    return max(set(found), key=found.count) if found else None


def _template_findings(template: str | None, eos: str | None, turn_end: str | None, gen: dict[str, Any],
                       tok: dict[str, Any]) -> list[dict[str, Any]]:
    if not template or not eos:
        return []
    if eos in template or "eos_token" in template:
        return []
    stop_ids = gen.get("eos_token_id")
    decoder = tok.get("added_tokens_decoder") or {}
    turn_id = next((int(i) for i, t in decoder.items() if isinstance(t, dict) and t.get("content") == turn_end), None)
    stops_on_turn_end = turn_id is not None and isinstance(stop_ids, list) and turn_id in stop_ids
    if turn_end and stops_on_turn_end:
        return [_finding("turn-end-not-eos", "warning",
                         f"the chat template ends turns with {turn_end!r}, not the EOS token {eos!r}; "
                         f"generation_config.json stops on it (eos_token_id {stop_ids}), so evaluation must too",
                         field="chat_template", turn_end=turn_end, eos_token=eos, eos_token_id=stop_ids)]
    return [_finding("chat-template-without-eos", "error",
                     f"the chat template never writes the EOS token {eos!r}"
                     + (f" (turns end with {turn_end!r}, which is not a stop token)" if turn_end else "")
                     + ": trained turns do not end in a token generation stops on",
                     field="chat_template", eos_token=eos, turn_end=turn_end, eos_token_id=stop_ids)]


def _loss_findings(train: dict[str, Any], path: Path | None) -> list[dict[str, Any]]:
    out = []
    entries = [("", train)] + [(f"datasets[{i}].", ds) for i, ds in enumerate(train.get("datasets") or [])
                               if isinstance(ds, dict)]
    for prefix, cfg in entries:
        v = cfg.get("train_on_eos")
        if v is False or (isinstance(v, str) and v.strip().lower() in ("none", "false")):
            out.append(_finding("eos-not-in-loss", "error",
                                f"{prefix}train_on_eos is {v!r}: EOS tokens are masked out of the loss, so the model "
                                "never learns to stop", file=str(path), field=f"{prefix}train_on_eos", value=v))
        if cfg.get("mask_eos") is True:
            out.append(_finding("eos-not-in-loss", "error",
                                f"{prefix}mask_eos is true: EOS tokens are masked out of the loss, so the model "
                                "never learns to stop", file=str(path), field=f"{prefix}mask_eos", value=True))
    return out


def attach_findings(result: dict[str, Any], lint: dict[str, Any]) -> dict[str, Any]:
    """Record a training-config lint in a diagnosis, cited as evidence when the verdict is about termination.

    A ``non_data`` verdict whose fired rule names :data:`TERMINATION_CHECKS` gets the findings as an
    extra condition's evidence and in its summary; any other verdict keeps them under
    ``training_config`` only, marked as reported (a finding alone is not a verdict).
    """
    findings = lint.get("findings") or []
    termination = result.get("verdict") == "non_data" and any(
        set(f.get("then", {}).get("checks") or []) & set(TERMINATION_CHECKS) for f in result.get("fired_rules") or [])
    cited = termination and bool(findings)
    record = {**lint, "cited": cited,
              "note": ("cited as evidence of the termination verdict" if cited else
                       "reported only: no termination verdict to support" if findings else "no finding")}
    result = {**result, "training_config": record}
    if not cited:
        return result
    fired = []
    for f in result["fired_rules"]:
        if set(f.get("then", {}).get("checks") or []) & set(TERMINATION_CHECKS):
            f = {**f, "conditions": [*f["conditions"], {"predicate": "training_config", "holds": True,
                                                         "evidence": {"reason": _findings_text(findings),
                                                                      "findings": findings}}]}
        fired.append(f)
    return {**result, "fired_rules": fired,
            "summary": f"{result['summary']}; training config {lint['dir']}: {_findings_text(findings)}"}


def _findings_text(findings: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['id']} ({f['severity']}): {f['message']}" for f in findings)
