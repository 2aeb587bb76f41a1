"""Throughput: concurrent judge requests, the Redis label cache, prefix share, the vllm backend's requests.

Queue tests use the real Redis and real RQ workers (in-process SimpleWorker).
"""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from slicelab.service.errors import ConfigError
from slicelab.service.judge import judge_spec
from slicelab.service.judge.openai_backend import OpenAIJudge
from slicelab.service.judge.vllm_backend import (VLLMJudge, attempt_from_output, engine_kwargs, make_sampling_params,
                                        sampling_kwargs)
from slicelab.service.label_cache import LabelCache, cache_key, content_hash, decode, encode
from slicelab.service.labeler_factory import make_judge
from slicelab.service.runner import enqueue_chunk, prepare_run
from slicelab.service.samples import Document, Status
from slicelab.service.throughput import common_prefix_len, label_chunk_size, prompt_text, run_stats, static_prefix
from tests.conftest import make_samples
from tests.judge_server import VALID_EVAL, JudgeServer


class CountingServer(JudgeServer):
    """The test judge server, also recording the most requests it had in flight at once."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.in_flight = self.max_in_flight = 0
        self._count_lock = threading.Lock()

    def reply(self, body):
        with self._count_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return super().reply(body)
        finally:
            with self._count_lock:
                self.in_flight -= 1


def judge(server, **kw) -> OpenAIJudge:
    return OpenAIJudge(base_url=server.base_url, model="test-judge", transport_retries=0, **kw)


def test_label_many_keeps_concurrency_requests_in_flight():
    with CountingServer(slow_s=0.3) as srv:
        items = make_samples(8, marker="[[slow]]")
        t0 = time.perf_counter()
        results = judge(srv, concurrency=4).label_many(items)
        wall = time.perf_counter() - t0
    assert [r.status for r in results] == [Status.labeled] * 8
    assert srv.max_in_flight == 4  # overlapped, and never more than the cap
    assert wall < 8 * 0.3  # one at a time takes at least 2.4 s
    assert [r.request_hash for r in results] == [judge(srv).build_request(s)[2] for s in items]  # input order


def test_label_many_keeps_the_statuses_and_retry_rules_of_label(judge_server):
    items = [make_samples(1, marker=m)[0].model_copy(update={"id": f"x/{i}"})
             for i, m in enumerate(["", "[[invalid]]", "[[toolong]]", "[[flaky]]", "[[truncated]]"])]
    many = judge(judge_server, max_attempts=3, concurrency=5).label_many(items)
    assert [r.status for r in many] == ["labeled", "format_error", "input_too_long", "labeled", "truncated"]
    assert [r.attempts for r in many] == [1, 3, 1, 2, 2]  # a cut reply: once more with twice the budget
    invalid = [json.dumps(q["messages"]) for q in judge_server.requests if "[[invalid]]" in json.dumps(q)]
    assert len(invalid) == 3 and len(set(invalid)) == 1  # the prompt never grows
    assert sum("[[toolong]]" in json.dumps(q) for q in judge_server.requests) == 1  # a 400 is never retried
    assert many[0].labels["task_type"] == VALID_EVAL["task_type"]


def test_concurrency_is_not_part_of_the_judge_configuration():
    base = {"judge_url": "http://127.0.0.1:9/v1", "judge_model": "m"}
    a, b = make_judge(judge_spec(**base, concurrency=1)), make_judge(judge_spec(**base, concurrency=32))
    assert (a.concurrency, b.concurrency) == (1, 32)
    assert a.config_hash() == b.config_hash() == make_judge(judge_spec(**base)).config_hash()
    with pytest.raises(Exception, match="--judge-concurrency"):
        judge_spec(**base, concurrency=0)
    assert label_chunk_size(judge_spec(**base, concurrency=16)) == 128
    assert label_chunk_size(judge_spec()) == 8


# --- the label cache through real RQ workers ---------------------------------------------------------------


def _run(tmp_path, name, server, samples, redis_url, chunk_size=2, **options):
    inp = tmp_path / f"{name}.jsonl"
    inp.write_text("".join(json.dumps({"id": s.id, "task": s.task, "question": s.question,
                                       "reference_answer": s.reference_answer}) + "\n" for s in samples))
    spec = {"backend": "openai", "base_url": server.base_url, "model": "test-judge", "transport_retries": 0,
            "max_attempts": 2, "concurrency": 4}
    plan = prepare_run(iter(samples), input_path=inp, out_path=tmp_path / name / "out.parquet", kind="eval",
                       judge=spec, chunk_size=chunk_size, options=options)
    conn = Redis.from_url(redis_url)
    q = Queue("slicelab-test", connection=conn)
    for c in plan.pending:
        enqueue_chunk(q, plan.store, c)
    SimpleWorker([q], connection=conn).work(burst=True)
    assert plan.store.done_chunks() == set(range(plan.n_chunks))
    return plan.store, plan.store.read_parts()


def test_rerun_and_repeated_samples_cost_no_judge_call(tmp_path, redis_url, judge_server):
    samples = make_samples(4)
    # the same content under other ids (a repeated sample, another benchmark sharing items)
    repeated = [s.model_copy(update={"id": f"copy/{i}"}) for i, s in enumerate(samples)]
    store, first = _run(tmp_path, "a", judge_server, samples + repeated, redis_url, chunk_size=4)
    assert len(judge_server.requests) == 4  # chunk 1 (the copies) came from the cache
    assert list(first["cache_hit"]) == [False] * 4 + [True] * 4
    stats = run_stats(store, first)
    assert (stats["judge_items"], stats["cache_hits"], stats["labeled"]) == (4, 4, 8)
    assert 0.5 < stats["prefix_share"] < 1 and stats["output_tokens_per_label"] > 0

    _, second = _run(tmp_path, "b", judge_server, samples, redis_url)  # a re-run in another run folder
    assert len(judge_server.requests) == 4 and second["cache_hit"].all()
    keep = [c for c in first.columns if c not in ("cache_hit", "run_key")]
    a = first.iloc[:4][keep].reset_index(drop=True)
    b = second[keep].reset_index(drop=True)
    assert a.drop(columns=["source_file"]).to_json() == b.drop(columns=["source_file"]).to_json()

    _, third = _run(tmp_path, "c", judge_server, samples, redis_url, cache=False)  # --no-cache
    assert len(judge_server.requests) == 8 and not third["cache_hit"].any()


def test_failures_are_not_cached(tmp_path, redis_url, judge_server):
    samples = make_samples(2, marker="[[invalid]]")
    _run(tmp_path, "a", judge_server, samples, redis_url)
    _run(tmp_path, "b", judge_server, samples, redis_url)
    assert len(judge_server.requests) == 2 * 2 * 2  # 2 samples x 2 attempts, both runs
    assert not Redis.from_url(redis_url).keys("slicelab:label:*")


def test_cache_key_follows_model_prompt_and_content():
    item = make_samples(1)[0]
    a = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m1")
    other_model = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m2")
    other_prompt = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m1", max_tokens=64)

    def key(j, it=item):
        return cache_key(it, j.build_request(it)[2], j.config_hash())

    assert key(a) == key(OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m1", concurrency=2))
    assert len({key(a), key(other_model), key(other_prompt)}) == 3
    assert key(a, item.model_copy(update={"question": item.question + "?"})) != key(a)
    # normalized content: ids, line endings and surrounding space do not matter; the text does
    assert content_hash(item) == content_hash(item.model_copy(update={"id": "z", "question": f" {item.question}\r\n"}))
    assert content_hash(item) != content_hash(item.model_copy(update={"correct": False}))
    assert content_hash(Document(id="d", text="x")) != content_hash(Document(id="d", text="y"))


def test_cache_round_trips_results_and_stores_only_labeled(redis_url, judge_server):
    j = judge(judge_server)
    ok, bad = j.label(make_samples(1)[0]), j.label(make_samples(1, marker="[[invalid]]")[0])
    assert decode(encode(ok)) == ok
    cache = LabelCache(Redis.from_url(redis_url), ttl_s=60)
    assert cache.put_many([("k1", ok), ("k2", bad)]) == 1
    assert cache.get_many(["k1", "k2"]) == [ok, None]
    Redis.from_url(redis_url).set("k3", "{not json")
    assert cache.get_many(["k3"]) == [None]
    assert 0 < Redis.from_url(redis_url).ttl("k1") <= 60


# --- prefix share ----------------------------------------------------------------------------------------


def test_static_prefix_is_the_item_independent_head_of_the_prompt():
    j = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m")
    prefix = static_prefix(j, "eval")
    assert prefix.startswith("system\n") and prefix.endswith("user\nBenchmark: ")
    for s in make_samples(3, wrong_every=2):
        text = prompt_text(j.build_request(s)[0])
        assert text.startswith(prefix) and len(text) > len(prefix)
    assert static_prefix(j, "document").endswith("user\nDocument:\n")
    assert common_prefix_len("abcdef", "abcxyz") == 3 and common_prefix_len("ab", "abc") == 2
    assert common_prefix_len("", "a") == 0 and common_prefix_len("xa", "ya") == 0


# --- the vllm backend, without vllm ----------------------------------------------------------------------


class _Params:
    def __init__(self, **kw):
        self.kw = kw


def _module(new_api: bool):
    names = {"SamplingParams": type("SamplingParams", (_Params,), {})}
    names["StructuredOutputsParams" if new_api else "GuidedDecodingParams"] = type("Constraint", (_Params,), {})
    return SimpleNamespace(**names)


@pytest.mark.parametrize("new_api", [True, False], ids=["structured_outputs", "guided_decoding"])
def test_vllm_sampling_params_use_the_installed_structured_output_api(new_api):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    kwargs = sampling_kwargs(schema, max_tokens=160, temperature=0.0)
    params = make_sampling_params(_module(new_api), kwargs)
    field = "structured_outputs" if new_api else "guided_decoding"
    assert set(params.kw) == {"max_tokens", "temperature", field}
    assert params.kw[field].kw == {"json": schema, "disable_any_whitespace": True} and params.kw["max_tokens"] == 160
    engine = engine_kwargs("org/model", _module(new_api), {"max_model_len": 4096})
    assert engine["enable_prefix_caching"] is True and engine["max_model_len"] == 4096
    if new_api:
        assert engine["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    else:
        assert engine["guided_decoding_backend"] == "xgrammar"
    with pytest.raises(Exception, match="StructuredOutputsParams"):
        make_sampling_params(SimpleNamespace(SamplingParams=_Params), kwargs)


class _FakeLLM:
    """Answers ``LLM.chat`` like vLLM: one RequestOutput per conversation."""

    def __init__(self):
        self.calls: list[list] = []
        self.seen: dict[str, int] = {}

    def chat(self, conversations, sampling_params, use_tqdm):
        self.calls.append(conversations)
        if any("[[toolong]]" in c[-1]["content"] for c in conversations):
            raise ValueError("The decoder prompt (length 9000) is longer than the maximum model length of 4096.")
        out = []
        for c in conversations:
            prompt = c[-1]["content"]
            self.seen[prompt] = self.seen.get(prompt, 0) + 1
            text = json.dumps(VALID_EVAL)
            if "[[flaky]]" in prompt and self.seen[prompt] == 1:
                text = "not json"
            out.append(SimpleNamespace(prompt_token_ids=[1] * 50,
                                       outputs=[SimpleNamespace(text=text, finish_reason="stop", token_ids=[1] * 12)]))
        return out


def test_vllm_judge_batches_every_pending_attempt_in_one_chat_call():
    j = VLLMJudge(model="org/model", max_attempts=3)
    j._llm, j._sampling = _FakeLLM(), _module(True)
    items = [make_samples(1, marker=m)[0] for m in ("", "[[flaky]]", "", "[[toolong]]")]
    results = j.label_many(items)
    assert [r.status for r in results] == ["labeled", "labeled", "labeled", "input_too_long"]
    assert [r.attempts for r in results] == [1, 2, 1, 1]
    assert results[0].prompt_tokens == 50 and results[0].completion_tokens == 12 and results[0].backend == "vllm"
    # batch of 4 fails on the too-long prompt, so it is split per request; then the flaky retry alone
    sizes = [len(c) for c in j._llm.calls]
    assert sizes[0] == 4 and sizes[-1] == 1 and sum(1 for s in sizes if s == 1) == 5
    assert j.config_hash() == VLLMJudge(model="org/model", engine={"max_model_len": 2048}).config_hash()
    a = attempt_from_output(SimpleNamespace(prompt_token_ids=None, outputs=[
        SimpleNamespace(text=None, finish_reason="length", token_ids=None)]))
    assert (a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens) == ("", "length", 0, 0)


def test_vllm_backend_spec_and_missing_vllm():
    assert judge_spec(backend="vllm", judge_model="org/m") == {"backend": "vllm", "model": "org/m"}
    with pytest.raises(Exception, match="--judge-model"):
        judge_spec(backend="vllm")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="vllm is not installed"):  # raised at first use, not at import
            VLLMJudge(model="org/m").label_many(make_samples(1))


class _FakeLlama:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1

    def create_chat_completion(self, **kw):
        return {"choices": [{"message": {"content": json.dumps(VALID_EVAL)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


@pytest.mark.parametrize("env,expected_resets", [("1", 0), ("0", 1)], ids=["prefix-reused", "context-reset"])
def test_embedded_prefix_reuse_setting(monkeypatch, env, expected_resets):
    pytest.importorskip("llama_cpp")
    from slicelab.service.judge.embedded import PREFIX_REUSE_ENV, EmbeddedJudge

    try:
        monkeypatch.setenv(PREFIX_REUSE_ENV, env)
        j = EmbeddedJudge()
    except ConfigError as e:  # no bundled model installed
        pytest.skip(str(e))
    llm = _FakeLlama()
    messages, cls, _, _ = j.build_request(make_samples(1)[0])
    assert j._complete(llm, messages, cls).text == json.dumps(VALID_EVAL)
    assert llm.resets == expected_resets
    assert j.config_hash() == EmbeddedJudge(prefix_reuse=env == "0").config_hash()


def test_cli_vllm_backend_without_vllm_fails_before_any_run(tmp_path):
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from tests.conftest import run_cli

    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a", "question": "Is 7 prime?"}\n')
    out = tmp_path / "labels.parquet"
    r = run_cli("label-benchmark", str(data), "-o", str(out), "--judge-backend", "vllm", "--judge-model", "org/m")
    assert r.returncode != 0 and "vllm package is not installed" in r.stderr + r.stdout
    assert "slicelab[vllm]" in " ".join(r.stderr.split())  # not eaten as Rich markup
    assert not out.exists() and not (tmp_path / ".slicelab-runs").exists()


def test_unknown_backend_names_the_judge_backend_option():
    with pytest.raises(ConfigError, match=r"^--judge-backend: unknown judge backend 'bogus'"):
        judge_spec(backend="bogus")


def test_samples_refused_by_an_open_circuit_are_not_counted_as_sent():
    from slicelab.service.judge import JudgeResult
    from slicelab.service.chunk_labeling import label_items

    items = make_samples(3)
    real = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m")

    def result(i):  # the first item reached the judge; the breaker refused the other two
        error = None if i == 0 else ("judge m unavailable: circuit open for 60 s "
                                     "(more than SLICELAB_JUDGE_MAX_PAUSE_S=60); re-run to retry")
        return JudgeResult(status=Status.labeled if i == 0 else Status.judge_error, labels=None,
                           raw_texts=[""], finish_reason=None, prompt_tokens=0, completion_tokens=0,
                           attempts=1, model="m", backend="openai", error=error, latency_s=0.0,
                           request_hash="", prompt_ref="")

    real.label_many = lambda batch: [result(i) for i in range(len(batch))]
    _, counters = label_items(real, items)
    assert (counters["items"], counters["judge_items"], counters["cache_hits"]) == (3, 1, 0)
    one = prompt_text(real.build_request(items[0])[0])
    assert counters["prompt_chars"] == len(one)


def test_calibrate_with_the_vllm_backend_without_vllm_fails_before_any_work(tmp_path):
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from slicelab.calibration.gold import BUNDLED
    from tests.conftest import run_cli

    r = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), "--judge-backend", "vllm", "--judge-model", "org/m",
                env={"SLICELAB_HOME": str(tmp_path)})
    assert r.returncode == 2 and "slicelab[vllm]" in r.stdout + r.stderr
    assert not (tmp_path / "calibrations").exists()
