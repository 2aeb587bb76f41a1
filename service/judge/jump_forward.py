"""Greedy decoding of a values reply that reads the forced tokens in one batch ("jump-forward" decoding).

The values grammar (:func:`service.judge.values_form.values_grammar` with token-id literals)
admits a small, fixed set of token sequences per axis. Under it, greedy decoding picks, at every
step, the most likely of the tokens the grammar allows. Wherever the grammar allows exactly one
token (the rest of an id once its first tokens are chosen, the newline between axes) there is
nothing to choose: :class:`ValuesDecoder` appends such tokens without asking the model and reads
them together in the next forward pass, so a reply costs one forward pass per real choice
instead of one per token. A final forced end-of-generation token is never read at all.

The reply is the one llama.cpp's grammar-constrained greedy sampler gives (same prompt, same
allowed tokens, argmax over them; see SGLang's compressed finite-state-machine decoding, Zheng et
al. 2024, "SGLang: Efficient Execution of Structured Language Model Programs", for the idea);
only the batching of the forced tokens differs, which can move logits in the last floating-point
digits, so ``bench/embedded_judge.py`` reports how many replies match the sampler's exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from slicelab.service.judge.values_form import AXIS_SEP, ITEM_SEP, Encoder, operation_cap
from slicelab.service.taxonomy import AxisDef

#: Stands for "any end-of-generation token" inside an alternative's token sequence.
EOG = -1


@dataclass
class Reply:
    """A decoded reply: its text, ``"stop"`` or ``"length"``, and token counts as llama-cpp-python reports them."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def chat_prompt(llm: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt token ids ``llm.create_chat_completion(messages)`` reads: the model's own chat template.

    Raises:
        ValueError: the model file has no chat template.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("the model file has no chat template (tokenizer.chat_template)")
    eos, bos = llm.token_eos(), llm.token_bos()
    text = lambda t: llm.detokenize([t], special=True).decode("utf-8", errors="replace") if t != -1 else ""  # noqa: E731
    result = Jinja2ChatFormatter(template=template, eos_token=text(eos), bos_token=text(bos),
                                 stop_token_ids=[eos])(messages=messages)
    return llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


class ValuesDecoder:
    """Greedy values-form decoding for one label model's axes on one ``llama_cpp.Llama``.

    Args:
        llm: the model (its context is shared with other calls; the caller holds its lock).
        axes: the label model's axes, in reply order (:func:`service.judge.values_form.label_axes`).
        max_items: the operation-list cap, as in the grammar.
        encode: the tokenizer the grammar's literals were written with.
        batch_forced: read the forced tokens in one forward pass (the point of this class); False
            reads them one by one, as the grammar sampler does, which gives its replies exactly
            (for checking this class against it).
    """

    def __init__(self, llm: Any, axes: list[AxisDef], max_items: int | None, encode: Encoder, *,
                 batch_forced: bool = True):
        self.llm = llm
        self.axes = axes
        self.caps = [operation_cap(a, max_items) if a.kind != "single" else 1 for a in axes]
        self.ids = [{i: encode(i) for i in a.ids} for a in axes]
        self.sep, self.newline = encode(ITEM_SEP), encode(AXIS_SEP)
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.eog = np.array([t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)])
        self._pending: list[int] = []
        self.batch_forced = batch_forced

    def decode(self, prompt: list[int], max_tokens: int, *, reuse_prefix: bool = True) -> Reply:
        """Read ``prompt`` (token ids, as the chat handler makes them) and decode a values reply.

        ``reuse_prefix``: keep the context's tokens shared with the previous call (as
        ``Llama.generate`` does), else read the whole prompt again.

        Raises:
            ValueError: the prompt does not fit the context window (the message llama-cpp-python gives).
        """
        llm = self.llm
        if len(prompt) + 1 > llm.n_ctx():
            raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {llm.n_ctx()}")
        self._start(prompt, reuse_prefix)
        out: list[int] = []
        finish = "stop"
        for n, axis in enumerate(self.axes):
            last = n == len(self.axes) - 1
            end = [EOG] if last else self.newline
            chosen: list[str] = []
            while True:
                count = len(chosen) + 1  # ids in the list once this one is chosen
                may_end = axis.kind == "single" or count >= axis.min_items
                may_go_on = axis.kind != "single" and count < self.caps[n]
                options = {}
                for i, toks in self.ids[n].items():
                    if i in chosen:
                        continue
                    if may_end:
                        options[(i, False)] = toks + end
                    if may_go_on:
                        options[(i, True)] = toks + self.sep
                (i, more), toks = self._choose(options, out, max_tokens)
                if toks is None:
                    finish = "length"
                    break
                chosen.append(i)
                if not more:
                    break
            if finish == "length" or last:
                break
        text = llm.detokenize(out).decode("utf-8", errors="replace")
        return Reply(text=text, finish_reason=finish, prompt_tokens=len(prompt), completion_tokens=len(out))

    def _start(self, prompt: list[int], reuse_prefix: bool) -> None:
        """Read the part of ``prompt`` the context does not hold yet (at least its last token)."""
        llm = self.llm
        keep = 0
        if reuse_prefix:
            n = min(llm.n_tokens, len(prompt))
            differ = np.flatnonzero(llm.input_ids[:n] != np.asarray(prompt[:n]))
            keep = int(differ[0]) if len(differ) else n
            keep = min(keep, len(prompt) - 1)  # the last prompt token is read again for its logits
        llm.n_tokens = keep  # Llama.eval drops the cache from here on
        llm.eval(prompt[keep:])
        self._pending = []

    def _choose(self, options: dict[Any, list[int]], out: list[int], max_tokens: int):
        """Walk the alternatives' shared tokens; ask the model only where they part.

        Returns:
            ``(key, tokens)`` of the alternative taken, its tokens appended to ``out``
            (an end-of-generation step is not appended, as llama-cpp-python does not count it);
            ``(None, None)`` when ``max_tokens`` ran out first.
        """
        alive = dict(options)
        depth = 0
        while True:
            done = [k for k, toks in alive.items() if len(toks) == depth]
            if done:
                return done[0], alive[done[0]]
            nexts = {toks[depth] for toks in alive.values()}
            if len(nexts) == 1:
                tok = nexts.pop()
            else:
                tok = self._argmax(nexts)
            if tok == EOG:
                return next((k, t) for k, t in alive.items() if t[depth] == EOG)
            if len(out) >= max_tokens:
                return None, None
            out.append(tok)
            self._pending.append(tok)
            alive = {k: t for k, t in alive.items() if t[depth] == tok}
            depth += 1

    def _argmax(self, candidates: set[int]) -> int:
        """The candidate the model ranks first after reading the pending tokens (EOG: any end token)."""
        import llama_cpp

        llm = self.llm
        for batch in [self._pending] if self.batch_forced else [[t] for t in self._pending]:
            if batch:
                llm.eval(batch)
        self._pending = []
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        ids = [c for c in candidates if c != EOG]
        best = max(ids, key=lambda c: logits[c]) if ids else EOG
        if EOG in candidates and (not ids or logits[self.eog].max() > logits[best]):
            return EOG
        return best
