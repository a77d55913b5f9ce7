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
