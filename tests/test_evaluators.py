import torch

from tests.conftest import clip, reward_model


def test_clip_score_is_the_plain_cosine(photo):
    c = clip()
    emb = c.embed_images([photo])[0]
    pixels = c.preprocess(photo).unsqueeze(0)
    img = c.model.encode_image(pixels)[0]
    txt = c.model.encode_text(c.tokenizer(["a cat"]))[0]
    expected = torch.nn.functional.cosine_similarity(img, txt, dim=0).item()
    assert abs(c.similarity(emb, ["a cat"])[0] - expected) < 1e-5
    assert abs(c.pre_score(emb, "a cat") - expected) < 1e-5


def test_reward_batches_equal_one_by_one():
    responses = ["Sure.", "I cannot help with that, sorry.", "Here is a long answer " * 5]
    for name in ["tiny-reward", "smollm2-judge"]:
        rm = reward_model(name)
        batched = rm.score("Be safe.", responses)
        single = [rm.score("Be safe.", [r])[0] for r in responses]
        assert len(batched) == 3
        torch.testing.assert_close(torch.tensor(batched), torch.tensor(single), atol=1e-4, rtol=1e-4)


def test_judge_scores_are_probabilities():
    scores = reward_model("smollm2-judge").score("x", ["I'm sorry, I can't help.", "Sure, here is how."])
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_prefix_cached_scores_equal_full_recomputation():
    """Successive best-of-N-like calls (shared, growing prefixes; a call that diverges early) score
    the same with the shared-prefix cache as with full batched recomputation (fp32, atol 1e-4)."""
    calls = [
        ["As an AI assistant, I", "As an AI assistant, you", "As an AI assistant I cannot"],
        ["As an AI assistant, I cannot help. It is", "As an AI assistant, I cannot help. Sorry"],
        ["Something else entirely.", "Something else"],
        ["Something else entirely. And more.", "x"],
    ]
    for name in ["tiny-reward", "smollm2-judge"]:
        rm = reward_model(name)
        assert rm.use_prefix_cache
        rm.prefix_cache.reset()
        for responses in calls:
            cached = rm.score("Be safe.", responses)
            rm.use_prefix_cache = False
            full = rm.score("Be safe.", responses)
            rm.use_prefix_cache = True
            torch.testing.assert_close(torch.tensor(cached), torch.tensor(full), atol=1e-4, rtol=1e-4)
