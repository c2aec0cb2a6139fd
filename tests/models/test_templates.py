"""Golden tests of the shipped chat templates and of llmscisci_cfg.models.chat.

For each family: the exact rendered string of a fixed conversation (with and without the
generation prompt) and the exact trained-on tokens (assistant content + end-of-turn only).
The tiny tokenizer knows every family's special tokens, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.models import chat
from llmscisci_cfg.models.tiny import load_tiny_tokenizer, tokenizer_dir
from llmscisci_cfg.recipe.resolve import resolve, template_ref
from llmscisci_cfg.recipe.schema import Recipe

SYSTEM = "Classify the section."
USER = "What was easy?\n<text>\nThe code was public.\n</text>"
ANSWER = "<think>\nThe code was released.\n</think>\n<label>\n[1, 0, 0, 0, 0]\n</label>"
CONV = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": USER},
    {"role": "assistant", "content": ANSWER},
]
PROMPT = CONV[:2]

LLAMA_HEAD = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
    f"{SYSTEM}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{USER}<|eot_id|>"
)
GEMMA_HEAD = f"<bos><start_of_turn>user\n{SYSTEM}\n\n{USER}<end_of_turn>\n"
CHATML_HEAD = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n"

# family -> (prompt without generation prompt, generation prompt, trained text, after the turn)
GOLDEN = {
    "llama3": (
        LLAMA_HEAD,
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ANSWER + "<|eot_id|>",
        "",
    ),
    "gemma3": (GEMMA_HEAD, "<start_of_turn>model\n", ANSWER + "<end_of_turn>", "\n"),
    "chatml": (CHATML_HEAD, "<|im_start|>assistant\n", ANSWER + "<|im_end|>", "\n"),
    "tiny": (CHATML_HEAD, "<|im_start|>assistant\n", ANSWER + "<|im_end|>", "\n"),
}
END_OF_TURN = {
    "llama3": "<|eot_id|>",
    "gemma3": "<end_of_turn>",
    "chatml": "<|im_end|>",
    "tiny": "<|im_end|>",
}


def tokenizer_for(name: str):
    tokenizer = load_tiny_tokenizer(name)
    tokenizer.chat_template = chat.shipped_template(name)
    return tokenizer


def tokenizer_of(recipe: Recipe):
    """The recipe's tokenizer, loaded as `run` loads it (resolved once, then `load_tokenizer`)."""
    return resolve(recipe, cuda=False).tokenizer()


def template_text(recipe: Recipe) -> str:
    """The text of the recipe's chat template (for ``tokenizer``: what the tokenizer carries)."""
    ref = template_ref(recipe)
    return ref.text if ref.text is not None else tokenizer_of(recipe).chat_template


def make_recipe(tmp_path: Path | None = None, **model_and_template) -> Recipe:
    template = model_and_template.pop("template", {})
    recipe = Recipe.model_validate(
        {
            "name": "t",
            "model": {"name_or_path": "builtin:tiny", **model_and_template},
            "template": template,
            "data": {"source": {"path": "builtin:sample"}},
            "method": {"name": "sft"},
        }
    )
    if tmp_path is not None:
        recipe._source_path = tmp_path / "recipe.yaml"
    return recipe


# ----------------------------------------------------------------------------- golden strings


@pytest.mark.parametrize("name", chat.SHIPPED)
def test_golden_render(name):
    head, gen, trained, after = GOLDEN[name]
    tokenizer = tokenizer_for(name)
    assert chat.render(tokenizer, PROMPT) == head
    assert chat.render(tokenizer, PROMPT, add_generation_prompt=True) == head + gen
    # a finished assistant turn gets no trailing assistant header
    assert chat.render(tokenizer, CONV) == head + gen + trained + after


@pytest.mark.parametrize("name", chat.SHIPPED)
def test_golden_trained_tokens(name):
    _, _, trained, _ = GOLDEN[name]
    tokenizer = tokenizer_for(name)
    ids, mask = chat.assistant_mask(tokenizer, CONV)
    kept = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(kept, skip_special_tokens=False) == trained
    assert kept[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    first, last = mask.index(1), len(mask) - 1 - mask[::-1].index(1)
    assert all(mask[first : last + 1]), "trained tokens form one contiguous run"
    # the prompt rendered with its generation prompt is exactly the untrained prefix
    prompt_ids = tokenizer(chat.render(tokenizer, PROMPT, True), add_special_tokens=False)[
        "input_ids"
    ]
    assert ids[:first] == prompt_ids


@pytest.mark.parametrize("name", chat.SHIPPED)
def test_multi_turn_trains_every_assistant_turn_only(name):
    tokenizer = tokenizer_for(name)
    conv = [
        *CONV,
        {"role": "user", "content": "And now?"},
        {"role": "assistant", "content": "second answer"},
    ]
    ids, mask = chat.assistant_mask(tokenizer, conv)
    runs, current = [], []
    for token, m in zip(ids, mask, strict=True):
        if m:
            current.append(token)
        elif current:
            runs, current = [*runs, current], []
    runs += [current] if current else []
    eot = END_OF_TURN[name]
    assert [tokenizer.decode(r, skip_special_tokens=False) for r in runs] == [
        ANSWER + eot,
        "second answer" + eot,
    ]


@pytest.mark.parametrize("name", chat.SHIPPED)
def test_trl_agrees_end_of_turn_is_trained(name):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    tokenizer = tokenizer_for(name)
    assert has_generation_markers(tokenizer.chat_template)
    assert chat.has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)


def test_gemma_without_system_and_qwen_default_system():
    user_only = [{"role": "user", "content": " hi "}]
    assert (
        chat.render(tokenizer_for("gemma3"), user_only, True)
        == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert chat.render(tokenizer_for("chatml"), user_only) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n hi <|im_end|>\n"
    )
    assert chat.render(tokenizer_for("tiny"), user_only) == "<|im_start|>user\n hi <|im_end|>\n"
    assert chat.render(tokenizer_for("llama3"), user_only, True) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


# ----------------------------------------------------------------------------- against the official text

# TRL vendors the official templates byte-for-byte (checked weekly against the Hub checkpoints).
OFFICIAL = {
    "llama3": ["llama3_1.jinja", "llama3_2.jinja"],
    "gemma3": ["gemma3.jinja"],
    "chatml": ["qwen2_5.jinja"],
}
CONVERSATIONS = [
    CONV,
    PROMPT,
    [{"role": "user", "content": "  padded  "}],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": " b \n"},
        {"role": "user", "content": "c"},
    ],
    [
        {"role": "system", "content": " s "},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "x"},
    ],
]


@pytest.mark.parametrize("name,official", [(n, f) for n, files in OFFICIAL.items() for f in files])
@pytest.mark.parametrize("conv", CONVERSATIONS)
@pytest.mark.parametrize("gen", [False, True])
def test_matches_official_template(name, official, conv, gen):
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / official
    if not path.is_file():
        pytest.skip(f"trl does not ship {official}")
    tokenizer = tokenizer_for(name)
    # Llama 3.2's official template stamps today's date; ours pins the 3.1 default, as date_string does
    kwargs = {"date_string": "26 Jul 2024"} if name == "llama3" else {}
    ours = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen, **kwargs)
    theirs = tokenizer.apply_chat_template(
        conv, tokenize=False, add_generation_prompt=gen, chat_template=path.read_text(), **kwargs
    )
    assert ours == theirs


@pytest.mark.parametrize("name", chat.SHIPPED)
def test_tools_and_tool_roles_are_refused(name):
    tokenizer = tokenizer_for(name)
    with pytest.raises(UserError, match="chat template"):
        chat.render(tokenizer, [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}])


# ----------------------------------------------------------------------------- choosing a template


@pytest.mark.parametrize(
    "name,family",
    [
        ("meta-llama/Llama-3.2-1B-Instruct", "llama3"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3"),
        ("huggyllama/llama-30b", "other"),
        ("google/gemma-3-1b-it", "gemma3"),
        ("google/gemma-2-2b-it", "other"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2"),
        ("Qwen/Qwen2-7B", "qwen2"),
        ("Qwen/Qwen3-4B", "other"),
        ("builtin:tiny", "tiny"),
        ("builtin:tiny-gemma", "tiny"),
        ("/models/my-finetune", "other"),
    ],
)
def test_infer_family(name, family):
    assert chat.infer_family(name) == family


@pytest.mark.parametrize(
    "model,template,expected",
    [
        ({"name_or_path": "builtin:tiny"}, {}, "tiny"),
        ({"name_or_path": "google/gemma-3-1b-it"}, {}, "gemma3"),
        ({"name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}, {}, "chatml"),
        ({"name_or_path": "org/custom", "family": "llama3"}, {}, "llama3"),
        ({"name_or_path": "org/custom"}, {}, "tokenizer"),
        ({"name_or_path": "google/gemma-3-1b-it"}, {"name": "chatml"}, "chatml"),
        ({"name_or_path": "builtin:tiny"}, {"file": "my.jinja"}, "file"),
    ],
)
def test_template_name(model, template, expected, tmp_path):
    (tmp_path / "my.jinja").write_text("{{ messages }}", encoding="utf-8")  # a file is read
    assert template_ref(make_recipe(tmp_path, **model, template=template)).name == expected


def test_template_text_shipped_and_file(tmp_path):
    assert template_text(make_recipe()) == (chat.shipped_template("tiny"))
    (tmp_path / "mine.jinja").write_text(
        "{% for m in messages %}{{ m.content }}{% endfor %}", encoding="utf-8"
    )
    recipe = make_recipe(tmp_path, template={"file": "mine.jinja"})
    assert template_text(recipe) == "{% for m in messages %}{{ m.content }}{% endfor %}"
    tokenizer = tokenizer_of(recipe)
    assert chat.render(tokenizer, [{"role": "user", "content": "hello"}]) == "hello"


def test_template_errors_name_the_key(tmp_path):
    with pytest.raises(
        UserError,
        match=r"template.name: unknown template 'vicuna'.*llama3, gemma3, chatml, tiny, tokenizer",
    ):
        template_text(make_recipe(template={"name": "vicuna"}))
    with pytest.raises(UserError, match=r"template.file: file not found: .*missing.jinja"):
        template_text(make_recipe(tmp_path, template={"file": "missing.jinja"}))
    (tmp_path / "latin1.jinja").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError, match="template.file: .*latin1.jinja is not UTF-8"):
        template_text(make_recipe(tmp_path, template={"file": "latin1.jinja"}))


def test_shipped_tokenizer_carries_the_tiny_template():
    shipped = (tokenizer_dir() / "chat_template.jinja").read_text(encoding="utf-8")
    assert shipped == chat.shipped_template("tiny")
    assert load_tiny_tokenizer().chat_template == shipped


# ----------------------------------------------------------------------------- loading tokenizers


@pytest.mark.parametrize(
    "template,bos,eos",
    [("tiny", None, "<|im_end|>"), ("chatml", None, "<|im_end|>"), ("llama3", "<|begin_of_text|>", "<|eot_id|>"),
     ("gemma3", "<bos>", "<end_of_turn>")],
)  # fmt: skip
def test_load_tokenizer_builtin(template, bos, eos):
    tokenizer = tokenizer_of(make_recipe(template={"name": template}))
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (bos, eos, "<pad>")
    assert tokenizer.padding_side == "left"
    assert tokenizer.chat_template == chat.shipped_template(template)


def test_tokenizer_option_round_trip(tmp_path):
    # builtin: 'tokenizer' keeps the shipped tokenizer's own (tiny) template
    tokenizer = tokenizer_of(make_recipe(template={"name": "tokenizer"}))
    assert tokenizer.chat_template == chat.shipped_template("tiny")
    # a saved tokenizer (as export writes it) keeps the training template through a reload
    trained = tokenizer_of(make_recipe(template={"name": "llama3"}))
    trained.save_pretrained(tmp_path / "final")
    recipe = make_recipe(name_or_path=str(tmp_path / "final"), template={"name": "tokenizer"})
    reloaded = tokenizer_of(recipe)
    assert reloaded.chat_template == chat.shipped_template("llama3")
    assert template_text(recipe) == chat.shipped_template("llama3")
    assert chat.render(reloaded, CONV) == chat.render(trained, CONV)
    assert chat.assistant_mask(reloaded, CONV) == chat.assistant_mask(trained, CONV)
    # a local directory may be given relative to the recipe
    relative = make_recipe(tmp_path, name_or_path="final", template={"name": "tokenizer"})
    assert tokenizer_of(relative).chat_template == chat.shipped_template("llama3")
    # family 'other' defaults to the tokenizer's own template too
    assert template_ref(make_recipe(name_or_path=str(tmp_path / "final"))).name == "tokenizer"


def test_tokenizer_option_without_a_template_is_a_user_error(tmp_path):
    tokenizer = load_tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path / "bare")
    (tmp_path / "bare" / "chat_template.jinja").unlink(missing_ok=True)
    recipe = make_recipe(name_or_path=str(tmp_path / "bare"), template={"name": "tokenizer"})
    with pytest.raises(UserError, match=r"'tokenizer'.*has none; use template.name"):
        tokenizer_of(recipe)


@pytest.mark.parametrize("name", ["not a valid name!", "org/no-such-model-offline"])
def test_unloadable_tokenizer_is_a_user_error(name):
    with pytest.raises(
        UserError, match=r"model.name_or_path: cannot load the tokenizer of '" + name
    ):
        tokenizer_of(make_recipe(name_or_path=name, family="llama3"))


def test_unknown_builtin_is_a_user_error():
    with pytest.raises(
        UserError, match=r"unknown built-in model 'builtin:huge'; available: builtin:tiny"
    ):
        tokenizer_of(make_recipe(name_or_path="builtin:huge"))


# ----------------------------------------------------------------------------- preview


def test_preview_brackets_exactly_the_trained_text():
    tokenizer = tokenizer_for("gemma3")
    shown = chat.preview(tokenizer, CONV)
    head, body = shown.split("\n", 1)
    ids, mask = chat.assistant_mask(tokenizer, CONV)
    assert (
        head == f"[loss mask: {sum(mask)} of {len(ids)} tokens trained; trained text inside [[ ]]]"
    )
    head_text, gen, trained, after = GOLDEN["gemma3"]
    assert body == head_text + gen + "[[" + trained + "]]" + after


def test_preview_color_dims_untrained_text():
    tokenizer = tokenizer_for("chatml")
    body = chat.preview(tokenizer, CONV, color=True).split("\n", 1)[1]
    head_text, gen, trained, after = GOLDEN["chatml"]
    assert body == f"\x1b[2m{head_text}{gen}\x1b[0m{trained}\x1b[2m{after}\x1b[0m"


def test_preview_of_a_prompt_trains_nothing():
    shown = chat.preview(tokenizer_for("tiny"), PROMPT)
    assert shown.startswith("[loss mask: 0 of ") and "[[" not in shown.split("\n", 1)[1]


@pytest.mark.parametrize("name", ["./nomodel", "/no/such/model", "runs/quickstart_sft/final"])
def test_missing_local_model_directory_is_named(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"model.name_or_path: no such directory: {name} "):
        tokenizer_of(make_recipe(tmp_path, name_or_path=name, family="tiny"))
