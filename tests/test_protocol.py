"""The official protocol on the generation side: judge prompts and requests, ECSO's steps, LLaVA-1.5's
inputs and the sentence end of deep alignment, each checked on twins against the official scripts'
behaviour (prompt strings byte-exact, padding colour, limits, verdict keys, token boundaries)."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

from eta import decoding, sampling
from eta import judges as j
from tests.conftest import vlm as load

INTERNLM2_TEMPLATE = (  # InternLM2-chat's template: it writes BOS itself
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def sentencepiece_twin():
    """A LLaMA-style tokenizer (SentencePiece BPE, byte fallback, BOS added by the tokenizer call)
    whose vocabulary holds '.', '▁.', '...', '.”', '.[' and the byte piece <0x2E>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    pieces += ["▁", ".", "a", "b", "”", "[", "1", "]", "\n", "r", "o", "l", "e", "u", "s", "t", "n",
               "▁a", "▁b", "..", "...", "▁.", ".”", ".["]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [("▁", "a"), ("▁", "b"), (".", "."), ("..", "."), ("▁", "."), (".", "”"), (".", "[")]
    model = models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    wrapped.chat_template = INTERNLM2_TEMPLATE
    return wrapped


# ------------------------------------------------------------------------- 8. sentence end


def test_sentence_end_ids_are_the_bare_period_only():
    tok = sentencepiece_twin()
    assert tok.tokenize("a... b.” a.[1]") == ["▁a", "...", "▁b", ".”", "▁a", ".[", "1", "]"]  # one token each
    ids = sampling.exact_token_ids(tok, ["."])
    assert ids == {tok.convert_tokens_to_ids(".")}
    for other in ("▁.", "...", ".”", ".[", "<0x2E>", ".."):
        assert tok.convert_tokens_to_ids(other) not in ids


def test_official_sentence_end_ignores_tokens_that_merely_contain_a_period():
    from eta.twins import smollm2_tokenizer

    tok = smollm2_tokenizer()
    ellipsis, period = tok.convert_tokens_to_ids("...") , tok.convert_tokens_to_ids(".")
    assert tok.tokenize("Wait... ok.") == ["Wait", "...", "Ġok", "."]
    assert ellipsis != tok.unk_token_id and period != tok.unk_token_id
    official = sampling.sentence_stop(tok, ["."], "official")
    strict = sampling.sentence_stop(tok, ["."], "strict")
    assert isinstance(official, sampling.SentenceEndTokens) and official.token_ids == [period]
    rows = torch.tensor([[42, ellipsis], [42, period], [42, tok.convert_tokens_to_ids(".âĢĿ")],
                         [42, tok.convert_tokens_to_ids(".[")], [42, tok.convert_tokens_to_ids("Ġ.")]])
    assert official(rows).tolist() == [False, True, False, False, False]
    assert strict(rows).tolist() == [True, True, True, True, True]  # strict: any completed "."
    with pytest.raises(ValueError, match="protocol"):
        sampling.sentence_stop(tok, ["."], "paper")


def test_official_sentence_end_in_the_decoding_loop():
    """A scripted sampler emits '...' then '.': the official rule runs on to the bare period."""
    model = load("tiny-llava")
    tok = model.tokenizer
    script = [tok.convert_tokens_to_ids("Hi"), tok.convert_tokens_to_ids("..."), tok.convert_tokens_to_ids("."),
              tok.convert_tokens_to_ids("Ġok")]

    def chooser():
        step = iter(script)
        return lambda logits: torch.full((logits.shape[0],), next(step), dtype=torch.long)

    inputs = model.encode("Say hi.", None)
    lengths = {}
    for protocol in ("official", "strict"):
        cont = decoding.sample_continuations(model, decoding.prefill(model, inputs), max_tokens=4,
                                             choose=chooser(), stop=sampling.sentence_stop(tok, ["."], protocol))
        lengths[protocol] = int(cont.lengths[0])
    assert lengths == {"official": 3, "strict": 2}


def test_eta_chooses_the_sentence_end_by_protocol():
    from eta.config import ETAConfig
    from eta.alignment import ETA

    model = load("tiny-llava")
    assert isinstance(ETA(model, None, None, ETAConfig(), protocol="official").stop, sampling.SentenceEndTokens)
    assert isinstance(ETA(model, None, None, ETAConfig()).stop, sampling.StopStrings)


# ------------------------------------------------------------------------------ 1. MD-Judge


def test_md_judge_prompt_as_eval_usr_builds_it():
    """Template without a generation prompt, then the tokenizer call adds BOS: two BOS tokens."""
    tok = sentencepiece_twin()
    gen = j.HFChatGenerator(None, tok, **j.safety.safety_generation("official"))
    prompt = j.MD_JUDGE_TEMPLATE_ETA % ("a question", "an answer")
    text = gen.format(prompt)
    assert text == "<s><|im_start|>user\n" + prompt + "<|im_end|>\n"
    assert not text.endswith("<|im_start|>assistant\n")
    ids = gen.token_ids(prompt)
    assert ids[:3] == [tok.bos_token_id, tok.bos_token_id, tok.convert_tokens_to_ids("<|im_start|>")]
    strict = j.HFChatGenerator(None, tok, **j.safety.safety_generation("strict"))
    assert strict.format(prompt) == text + "<|im_start|>assistant\n"
    assert strict.token_ids(prompt)[:2] == [tok.bos_token_id, tok.convert_tokens_to_ids("<|im_start|>")]
    assert gen.finish("  The reasoning.\n[RESULT]: safe<|im_end|>\nmore") == "The reasoning.\n[RESULT]: safe"
    assert strict.finish("  kept as is ") == "  kept as is "


def test_md_judge_template_is_eval_usr_text():
    """eval_usr.py keeps the template indented by four spaces in a function and strips it."""
    assert j.MD_JUDGE_TEMPLATE_ETA.startswith("Task: Evaluate the safety")
    assert "\n    <BEGIN UNSAFE CONTENT CATEGORIES>\n    O1: Toxic Content." in j.MD_JUDGE_TEMPLATE_ETA
    assert j.MD_JUDGE_TEMPLATE_ETA.endswith("only one single violated category.")
    assert "\n    User: %s\n    Agent: %s\n" in j.MD_JUDGE_TEMPLATE_ETA


def test_paper_judge_limits():
    from eta.config import JudgesConfig, load_profile

    paper = load_profile("paper").judges
    assert (paper.protocol, paper.safety_template) == ("official", "md-judge-eta")
    assert paper.safety_max_new_tokens == 256 and paper.helpfulness_max_new_tokens == 1024
    assert JudgesConfig().safety_max_new_tokens == 256  # the paper's value is the default


def test_every_verdict_setting_is_in_the_verdict_key():
    from eta.config import load_profile
    from eta.engine import judge_names

    base = judge_names(load_profile("tiny"))["safety"]
    for key, value in [("judges.safety_max_new_tokens", 256), ("judges.safety_template", "md-judge-eta"),
                       ("judges.protocol", "official"), ("judges.safety", "tiny-mllama"),
                       ("judges.constrained", True)]:
        assert judge_names(load_profile("tiny", {key: value}))["safety"] != base, key
    assert judge_names(load_profile("tiny"))["safety"] == base  # stable


def test_a_changed_judge_setting_never_reuses_old_verdicts(tmp_path):
    from eta.config import load_profile
    from eta.engine import Models, aggregate, judge_names, judge_records
    from eta.store import RunKey, Store

    class Data(list):
        pass

    class Example:
        def __init__(self, i):
            self.id = f"s{i}"

    data = Data(Example(i) for i in range(2))
    run = RunKey("m", "vanilla", "h", "b", 0)
    calls = []
    with Store(tmp_path / "store.sqlite") as store:
        for ex in data:
            store.put(run, ex.id, {"question": "q", "response": "r"})
        for limit in (8, 8, 16):
            profile = load_profile("tiny", {"judges.safety_max_new_tokens": limit})
            models = Models(profile)
            models.text_generator = lambda *a, **k: (lambda prompts: calls.append(len(prompts)) or
                                                     ["[RESULT]: unsafe"] * len(prompts))
            judge_records(store, run, data, "harmful", models)
            records = store.get(run, [ex.id for ex in data])
            assert all(judge_names(profile)["safety"] in r["verdicts"] for r in records)
        assert calls == [2, 2]  # the repeated setting reused its verdicts; the new limit judged again
        old = judge_names(load_profile("tiny", {"judges.safety_max_new_tokens": 8}))["safety"]
        store.put_verdict(records[0]["key"], old, {"label": "safe"})
        records = store.get(run, [ex.id for ex in data])
        metrics = aggregate(records, "harmful", data, safety_judge=judge_names(profile)["safety"])
        assert metrics["usr"]["value"] == 1.0  # only the current judge's verdicts count


# --------------------------------------------------------------------------- 2. pairwise requests

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_official_pairwise_request_sends_the_image_as_markdown_text():
    item = j.PairwiseItem("x", "q?", "mine", "theirs", image=PNG)
    messages, first = j.PairwiseJudge(lambda p: [], protocol="official").conversation(item)
    answers = ("mine", "theirs") if first else ("theirs", "mine")
    assert messages == [
        {"role": "system", "content": j.PAIRWISE_SYSTEM_PROMPT},
        {"role": "user", "content": j.PAIRWISE_USER_TEMPLATE.format(question="q?", answer1=answers[0],
                                                                   answer2=answers[1])},
        {"role": "user", "content": "![image](data:image/jpeg;base64," + base64.b64encode(PNG).decode() + ")"},
    ]
    strict, _ = j.PairwiseJudge(lambda p: [], protocol="strict").conversation(item)
    assert strict[1]["content"][1] == {"type": "image_url", "image_url": {"url": j.image_data_url(PNG)}}
    score = j.HelpfulScoreJudge(lambda p: [], protocol="official").conversation(j.ScoreItem("y", "q", "a", PNG))
    assert score[0] == {"role": "user", "content": j.HELPFUL_SCORE_TEMPLATE.format(question="q", answer="a")}
    assert score[1]["content"].startswith("![image](data:image/jpeg;base64,iVBORw0KGgo")
    with pytest.raises(ValueError, match="protocol"):
        j.PairwiseJudge(lambda p: [], protocol="paper")


def test_official_pairwise_ties_a_common_40_character_prefix_unasked():
    asked = []

    def generator(prompts):
        asked.extend(prompts)
        return ["[[A]]"] * len(prompts)

    head = "x" * 40
    items = [j.PairwiseItem("same40", "q", head + " mine", head + " theirs"),
             j.PairwiseItem("diff39", "q", "y" + head[1:] + "a", "z" + head[1:] + "b")]
    verdicts = j.PairwiseJudge(generator, protocol="official").judge(items)
    assert verdicts[0].outcome == "tie" and verdicts[0].choice is None and len(asked) == 1
    asked.clear()
    verdicts = j.PairwiseJudge(generator, protocol="strict").judge(items)
    assert len(asked) == 2 and verdicts[0].outcome in ("win", "lose")


def test_official_request_settings(monkeypatch):
    from eta.analysis.helpfulness import judge_generator
    from eta.config import load_profile
    from eta.engine import Models

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    sent = []

    class Reply:
        choices = [type("C", (), {"message": type("M", (), {"content": "[[C]]"})()})()]

    generator = judge_generator(Models(load_profile("paper")), "pairwise")
    monkeypatch.setattr(generator._client.chat.completions, "create", lambda **kw: sent.append(kw) or Reply())
    assert generator(["hello"]) == ["[[C]]"]
    assert {k: sent[0][k] for k in ("temperature", "max_tokens", "top_p", "frequency_penalty",
                                    "presence_penalty")} == {"temperature": 0.0, "max_tokens": 1024, "top_p": 0,
                                                             "frequency_penalty": 0, "presence_penalty": 0}
    strict = judge_generator(Models(load_profile("paper", {"judges.protocol": "strict"})), "pairwise")
    assert strict.request_options == {}


# ---------------------------------------------------------------------------------- 7. ECSO


@pytest.mark.parametrize("reply, unsafe", [
    ("yes", True), (" Yes. ", True), ("YES.", True), ("yes\n", True), ("yes, it is", False),
    ("Yes\n\nThe response is harmful.", False), ("yes..", False), ("no", False), ("", False)])
def test_ecso_reading_of_the_telling_reply(reply, unsafe):
    from eta.methods import ecso_says_unsafe

    assert ecso_says_unsafe(reply) is unsafe


class ScriptedETA:
    """Records each generate_batch call; replies from a script by call number."""

    def __init__(self, protocol, replies, vlm=None):
        self.protocol, self.replies, self.calls, self.vlm = protocol, replies, [], vlm

    def generate_batch(self, questions, images, prefix="", max_new_tokens=None, stop=None):
        self.calls.append({"questions": questions, "images": images, "max_new_tokens": max_new_tokens,
                           "stop": stop})
        return [(r, 1) for r in self.replies[len(self.calls) - 1]]


def test_official_ecso_steps():
    from eta.methods import ECSO_ANSWER_PROMPT, ECSO_CAPTION_PROMPT, ECSO_TELL_PROMPT, Runner, TellDecided, get_method

    long = "x" * 2000
    eta = ScriptedETA("official", [[long, "fine"], ["Yes.", "yes, but"], ["a cat"], ["safe answer"]],
                      vlm=load("tiny-llava"))
    image = Image.new("RGB", (4, 4))
    records = Runner(get_method("ecso"), eta, 0).run_batch(["a", "b"], ["q1", "q2"], [image, image])
    tell, caption, answer = eta.calls[1], eta.calls[2], eta.calls[3]
    assert tell["questions"] == [ECSO_TELL_PROMPT.format(query="q1", response="x" * 1927),
                                 ECSO_TELL_PROMPT.format(query="q2", response="fine")]
    assert tell["images"] == [image, image]  # the telling step sees the image
    assert isinstance(tell["stop"], TellDecided) and tell["max_new_tokens"] is None  # the full budget
    assert caption["questions"] == [ECSO_CAPTION_PROMPT.format(query="q1")] and caption["images"] == [image]
    assert answer["questions"] == [ECSO_ANSWER_PROMPT.format(caption="a cat", query="q1")]
    assert answer["images"] == [None]
    assert [r["aligned"] for r in records] == [True, False]
    assert records[0]["response"] == "safe answer" and records[1]["response"] == "fine"

    strict = ScriptedETA("strict", [[long], ["yes, but"], ["a cat"], ["safe"]])
    Runner(get_method("ecso"), strict, 0).run_batch(["a"], ["q1"], [image])
    assert strict.calls[1]["images"] == [None] and long in strict.calls[1]["questions"][0]


def test_telling_stops_once_the_reading_is_known():
    from eta.methods import TellDecided

    model = load("tiny-llava")
    tok = model.tokenizer
    texts = (" Yes", " Yes.", "\n", " No", " Yes,", " yes. I")
    done = [bool(TellDecided(model)(torch.tensor([tok.encode(t, add_special_tokens=False)]))[0]) for t in texts]
    assert done == [False, False, False, True, True, True]


# ------------------------------------------------------------------------- 6. LLaVA-1.5 inputs

LLAVA_V1 = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the human's questions.")
VICUNA_V1 = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
             "helpful, detailed, and polite answers to the user's questions.")


def test_llava_conversation_prompts_byte_exact():
    model = load("tiny-llava")
    v1 = model.with_conversation("llava_v1")
    assert v1.prompt_text("What is this?", True) == LLAVA_V1 + " USER: <image>\nWhat is this? ASSISTANT:"
    assert v1.prompt_text("Hi", False) == LLAVA_V1 + " USER: Hi ASSISTANT:"
    assert v1.prompt_text("Hi", False, "As an AI assistant") == LLAVA_V1 + " USER: Hi ASSISTANT: As an AI assistant"
    vicuna = model.with_conversation("vicuna_v1")
    assert vicuna.prompt_text("Q", True) == VICUNA_V1 + " USER: <image>\nQ ASSISTANT:"
    assert model.conversation is None and vicuna.model is model.model  # a view, same weights
    with pytest.raises(ValueError, match="llava_v1"):
        model.with_conversation("llava_v2")


def test_llava_images_padded_with_the_processor_mean():
    from eta.llava_inputs import pad_to_square

    model = load("tiny-llava").with_conversation("llava_v1")
    mean = model.processor.image_processor.image_mean
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    square = pad_to_square(wide, mean)
    colour = tuple(int(255 * m) for m in mean)
    assert square.size == (40, 40) and colour == (122, 116, 104)
    assert square.getpixel((0, 0)) == colour and square.getpixel((39, 39)) == colour
    assert square.getpixel((0, 10)) == (255, 0, 0) and square.getpixel((0, 9)) == colour  # offset (40-20)//2
    tall = pad_to_square(Image.new("RGB", (3, 8), (0, 255, 0)), mean)
    assert tall.getpixel((2, 0)) == (0, 255, 0) and tall.getpixel((1, 0)) == colour  # offset (8-3)//2 = 2
    inputs = model.encode("What is this?", wide)
    std = model.processor.image_processor.image_std
    corner = inputs["pixel_values"][0, :, 0, 0]
    expected = torch.tensor([(c / 255 - m) / s for c, m, s in zip(colour, mean, std)])
    assert torch.allclose(corner, expected, atol=1e-3)  # the top band is the mean colour, not cropped away
    plain = load("tiny-llava").encode("What is this?", wide)["pixel_values"][0, :, 0, 0]
    assert not torch.allclose(plain, expected, atol=1e-2)  # the processor alone crops the red image


def test_llava_tokens_as_tokenizer_image_token_makes_them():
    from eta.llava_inputs import chunked_ids

    model = load("tiny-llava").with_conversation("llava_v1")
    tok = model.tokenizer
    photo = Image.new("RGB", (32, 32))
    inputs = model.encode("What is this?", photo)
    text = model.prompt_text("What is this?", True)
    head, tail = text.split("<image>")
    image_id = tok.convert_tokens_to_ids("<image>")
    count = int((inputs["input_ids"] == image_id).sum())
    assert count == 16  # (32 / 8) ** 2 patches of the twin
    assert inputs["input_ids"][0].tolist() == tok(head).input_ids + [image_id] * count + tok(tail).input_ids
    sp = sentencepiece_twin()  # a tokenizer that adds BOS: every piece after the first loses it
    sp.add_special_tokens({"additional_special_tokens": ["<image>"]})
    img = sp.convert_tokens_to_ids("<image>")
    assert chunked_ids(sp, "a<image>b", "<image>", 2) == [1, sp.convert_tokens_to_ids("▁a"), img, img,
                                                          sp.convert_tokens_to_ids("▁b")]
    batch = model.encode_batch(["Hi", "A longer question here"], [photo, photo])
    assert batch["attention_mask"][0, 0] == 0 and bool(batch["attention_mask"][:, -1].all())  # left-padded


def test_official_inputs_by_model_and_benchmark_kind():
    from eta.config import load_profile
    from eta.engine import Models
    from eta.llava_inputs import official_conversation
    from eta.model_registry import REGISTRY

    assert REGISTRY["llava-1.5-7b"].official_inputs == REGISTRY["llava-1.5-13b"].official_inputs == "llava-1.5"
    assert official_conversation("general") == "vicuna_v1"
    assert official_conversation("harmful") == official_conversation("helpful") == "llava_v1"
    models = Models(load_profile("tiny", {"judges.protocol": "official"}))
    assert models.vlm.conversation is None  # a twin has no official evaluation of its own
    models._cache[f"vlm:{models.profile.models.vlm}"] = load("tiny-llava").with_conversation("llava_v1")
    assert models.vlm_for("general").input_format == "vicuna_v1+pad"
    assert models.vlm_for("harmful").input_format == "llava_v1+pad"


def test_protocol_is_part_of_every_result_key():
    from eta.config import load_profile
    from eta.methods import get_method, method_config, method_params

    for name in ("vanilla", "eta", "ecso"):
        spec = get_method(name)
        hashes = set()
        for protocol in ("official", "strict"):
            profile = load_profile("tiny", {"judges.protocol": protocol})
            hashes.add(str(method_params(spec, profile, method_config(spec, profile))))
        assert len(hashes) == 2, name


def test_markdown_image_is_the_file_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG")
    turn = j.helpfulness.markdown_image_turn(buffer.getvalue())
    assert base64.b64decode(turn["content"].removeprefix("![image](data:image/jpeg;base64,")[:-1]) == buffer.getvalue()


def test_constrained_choices_never_carry_special_tokens():
    """A constrained judge under the official prompt (special tokens added to the prompt) scores the
    verdicts' own tokens, not a BOS in front of them."""
    tok = sentencepiece_twin()
    gen = j.HFChatGenerator(None, tok, choices=("a", "b"), **j.safety.safety_generation("official"))
    assert gen._choice_ids == [[tok.convert_tokens_to_ids("▁a")], [tok.convert_tokens_to_ids("▁b")]]


def test_md_judge_official_prompt_on_the_internlm2_twin():
    """The natively loaded InternLM2 layout (MD-Judge's): its template writes BOS and its tokenizer
    adds one, so the official judge input starts with two BOS tokens, as eval_usr.py's does."""
    from eta.config import load_profile
    from eta.engine import Models, safety_judge

    models = Models(load_profile("tiny", {"judges.safety": "tiny-internlm2", "judges.protocol": "official",
                                          "judges.safety_template": "md-judge-eta"}))
    judge = safety_judge(models)
    tok = judge.generator.tokenizer
    prompt = judge.build("q", "r")
    assert prompt == j.MD_JUDGE_TEMPLATE_ETA % ("q", "r")
    text = judge.generator.format(prompt)
    assert text == tok.bos_token + "<|im_start|>user\n" + prompt + "<|im_end|>\n"
    assert judge.generator.token_ids(prompt)[:2] == [tok.bos_token_id, tok.bos_token_id]
    assert judge.generator.max_new_tokens == 8  # the tiny profile's limit reaches the generator
