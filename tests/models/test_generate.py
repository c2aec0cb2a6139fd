"""The generation engine: same greedy outputs as the eval path it replaced, structured output,
streaming, and the openai backend against a real `llmscisci serve`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models.generate import Request, Sampling, TransformersEngine, cut_at_strings
from llmscisci_cfg.task.answer import parse_completion


@pytest.fixture(scope="module")
def tiny():
    from bench.bench_generate import _inputs

    return _inputs(rows=20)


def test_greedy_outputs_equal_the_eval_path_they_replaced(tiny):
    from bench.bench_generate import baseline_generate
    from llmscisci_cfg.models.generate import stop_ids

    model, tokenizer, texts = tiny
    stops = stop_ids(model, tokenizer)
    before = baseline_generate(
        model, tokenizer, texts, batch_size=8, max_new_tokens=24, stops=stops
    )
    engine = TransformersEngine(model, tokenizer, batch_size=8)
    requests = [Request(prompt=t, sampling=Sampling(max_new_tokens=24)) for t in texts]
    after = engine.generate(requests)
    assert [c[0].text for c in after] == before
    assert engine.stats.rows == len(texts) and engine.stats.completion_tokens > 0
    assert all(c[0].finish_reason in ("stop", "length") for c in after)


def test_structured_answers_parse_every_time(tiny):
    from llmscisci_cfg.task.grammar import Constraint

    model, tokenizer, texts = tiny
    engine = TransformersEngine(model, tokenizer, batch_size=8)
    sampling = Sampling(max_new_tokens=48, temperature=1.0, seed=1)
    requests = [
        Request(prompt=t, sampling=sampling, constraint=Constraint.think_label(5)) for t in texts
    ]
    for (completion,) in engine.generate(requests):
        formatted, label = parse_completion(completion.text, 5)
        assert formatted and label is not None, completion.text


def test_streaming_n_and_stop_strings(tiny):
    model, tokenizer, texts = tiny
    engine = TransformersEngine(model, tokenizer, batch_size=4)
    seen: dict[tuple[int, int], str] = {}
    sampling = Sampling(max_new_tokens=8, temperature=1.0, seed=3, n=2)
    out = engine.generate(
        [Request(prompt=t, sampling=sampling) for t in texts[:3]],
        on_token=lambda row, sample, text: seen.__setitem__((row, sample), text),
    )
    assert [len(c) for c in out] == [2, 2, 2]
    for (row, sample), text in seen.items():
        assert out[row][sample].text.startswith(text) or text.startswith(out[row][sample].text)
    seen.clear()  # rows a stop string ended: their padding is not streamed
    stopped = replace(sampling, max_new_tokens=40, stop=("the",))
    out = engine.generate(
        [Request(prompt=t, sampling=stopped) for t in texts[:4]],
        on_token=lambda row, sample, text: seen.__setitem__((row, sample), text),
    )
    assert any(c.finish_reason == "stop" for row in out for c in row)
    assert seen and not any(tokenizer.pad_token in text for text in seen.values())
    assert cut_at_strings("a<b>c<b>", ["<b>"]) == ("a", True)
    assert cut_at_strings("abc", ["x"]) == ("abc", False)


def test_decoding_ends_at_stop_strings_in_the_completion_only(tiny):
    """A batch whose rows have all reached a stop string stops decoding (at most 3 tokens
    later), the text is what an uncut run gives up to the string, and a string made of the
    prompt's end and the first tokens does not count (the prompts end in a newline and the
    untrained model writes newlines)."""
    model, tokenizer, texts = tiny
    engine = TransformersEngine(model, tokenizer, batch_size=8)
    forwards = []
    hook = model.register_forward_hook(lambda *args: forwards.append(1))
    try:

        def run(sampling):
            forwards.clear()
            out = engine.generate([Request(prompt=t, sampling=sampling) for t in texts[:8]])
            return [c[0] for c in out], len(forwards)

        greedy = Sampling(max_new_tokens=64)
        (first, *_), steps = run(greedy)
        assert first.text.startswith("\n\n") and steps == 64
        assert texts[0].endswith("\n")
        stopped, steps = run(replace(greedy, stop=("\n\n",)))
        assert steps == 4 and all(c.text == "" and c.finish_reason == "stop" for c in stopped)
        assert all(c.completion_tokens == 0 for c in stopped)

        sampled = Sampling(max_new_tokens=48, temperature=1.0, seed=5)
        plain, _ = run(sampled)
        stop = ("Library", "the")
        cut, _ = run(replace(sampled, stop=stop))
    finally:
        hook.remove()
    assert any(c.finish_reason == "stop" for c in cut)
    for before, after in zip(plain, cut, strict=True):
        text, found = cut_at_strings(before.text, stop)
        assert after.text == text and (after.finish_reason == "stop") == found


def test_stop_strings_with_structured_output(tiny):
    """Rows that reach a stop string at different steps, under a grammar: generate pads the
    ended rows, and the grammar's processor leaves them alone instead of failing on the pad."""
    from llmscisci_cfg.task.grammar import Constraint

    model, tokenizer, texts = tiny
    engine = TransformersEngine(model, tokenizer, batch_size=8)
    sampling = Sampling(max_new_tokens=48, temperature=1.0, seed=1)
    constraint = Constraint.think_label(5)
    requests = [Request(prompt=t, sampling=sampling, constraint=constraint) for t in texts[:8]]
    plain = [c[0].text for c in engine.generate(requests)]
    stop = ("work", "rained")
    assert 0 < sum(cut_at_strings(t, stop)[1] for t in plain) < len(plain)  # some rows only
    requests = [replace(r, sampling=replace(sampling, stop=stop)) for r in requests]
    cut = [c[0] for c in engine.generate(requests)]
    for before, after in zip(plain, cut, strict=True):
        text, found = cut_at_strings(before, stop)
        assert after.text == text and (after.finish_reason == "stop" or not found)


def test_openai_backend_against_a_real_server(server):
    from llmscisci_cfg.models.remote import OpenAIEngine
    from llmscisci_cfg.task.grammar import Constraint

    engine = OpenAIEngine(server.url, "builtin:tiny", max_concurrency=4)
    messages = [{"role": "user", "content": "Classify the section."}]
    sampling = Sampling(max_new_tokens=40, temperature=1.0)
    requests = [
        Request(messages=messages, sampling=sampling, constraint=Constraint.think_label(5))
    ] * 3
    out = engine.generate(requests)
    for (completion,) in out:
        assert parse_completion(completion.text, 5)[1] is not None, completion.text
    assert engine.stats.rows == 3 and engine.stats.completion_tokens > 0


def test_openai_backend_errors_are_user_errors(monkeypatch):
    from llmscisci_cfg.models.remote import OpenAIEngine

    engine = OpenAIEngine("http://127.0.0.1:9/v1", "m", max_retries=0, timeout=2)
    with pytest.raises(UserError, match="cannot reach the server at http://127.0.0.1:9/v1"):
        engine.generate([Request(messages=[{"role": "user", "content": "x"}])])
    monkeypatch.delenv("LLMSCISCI_NO_SUCH_KEY", raising=False)
    with pytest.raises(UserError, match="LLMSCISCI_NO_SUCH_KEY is not set"):
        OpenAIEngine("http://127.0.0.1:9/v1", "m", api_key_env="LLMSCISCI_NO_SUCH_KEY")


def test_vllm_backend_without_vllm_says_so():
    from llmscisci_cfg.models.vllm_engine import VLLMEngine

    with pytest.raises(UserError, match="needs the vllm package"):
        VLLMEngine("builtin:tiny")


@pytest.mark.parametrize("compile", ["off", "on"])
def test_token_level_generation_matches_the_text_level(tiny, compile):
    """`generate_ids` (GRPO rollouts) decodes what `generate` does, stop token kept, and
    the static-cache path (``compile: on``; eager off CUDA) gives the dynamic cache's tokens."""
    from llmscisci_cfg.models.generate import until_stop

    model, tokenizer, texts = tiny
    engine = TransformersEngine(model, tokenizer, batch_size=8, compile=compile)
    prompts = tokenizer(texts[:6], add_special_tokens=False)["input_ids"]
    ids = engine.generate_ids(prompts, Sampling(max_new_tokens=24))
    texts_out = engine.generate(
        [Request(prompt=t, sampling=Sampling(max_new_tokens=24)) for t in texts[:6]]
    )
    for row, (completion,) in zip(ids, texts_out, strict=True):
        tokens, stopped = until_stop(row, engine.stops)
        assert tokenizer.decode(tokens, skip_special_tokens=False) == completion.text
        assert stopped == (completion.finish_reason == "stop")
        assert len(row) == len(tokens) + stopped  # the stop token is part of the completion
    reference = TransformersEngine(model, tokenizer, batch_size=8, compile="off")
    assert ids == reference.generate_ids(prompts, Sampling(max_new_tokens=24))
    if compile == "on":
        assert engine.max_cache_len % 512 == 0 and engine.max_cache_len >= max(map(len, prompts))


def test_auto_compiles_only_work_that_pays_for_it(tiny):
    from llmscisci_cfg.models.generate import COMPILE_MIN_STEPS, worth_compiling

    assert not worth_compiling(3 * 256)  # an eval of 48 rows: 3 batches x 256 tokens
    assert worth_compiling(COMPILE_MIN_STEPS) and worth_compiling(625 * 256)  # 10k rows
    model, tokenizer, texts = tiny
    engine = TransformersEngine(model, tokenizer, compile="auto")
    assert not engine.may_compile and not engine.compiled  # CPU: never
    engine.may_compile = True  # as on CUDA: decided by the call's work
    engine.generate([Request(prompt=texts[0], sampling=Sampling(max_new_tokens=4))])
    assert not engine.compiled
