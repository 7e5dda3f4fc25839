"""Replies in the styles real model families answer the mutate prompt with, for the parent in conftest.

Each is invented for these tests, written the way that family tends to write (GPT-4.1's Markdown
headings, o3's terse bold labels, Claude's ``# ... existing code ...``, Qwen-Coder's tab indentation,
DeepSeek-R1's and Qwen3's ``<think>`` blocks, Llama's plain labels and copied line numbers), next to
the program text it must produce. Line numbers in comments refer to conftest.PARENT.
"""

from __future__ import annotations

from tests.agent.conftest import PARENT
from tests.agent.fake_llm import Scripted, completion


def cut_off(text: str) -> Scripted:
    """A completion the output token limit stopped (``finish_reason == "length"``)."""
    answer = completion(text, completion_tokens=8192)
    answer.body["choices"][0]["finish_reason"] = "length"  # type: ignore[index]
    return answer


# ---------------------------------------------------------------- Qwen2.5-Coder: tab indentation
QWEN_TABS = """<hypothesis>Damp the per-layer growth: multiply by 1.5 and add a small bias</hypothesis>
<rationale>
Doubling at every layer makes the activations explode with depth; a smaller gain keeps them in range.
</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
\tdef forward(self, x):
\t\tfor _ in range(self.layers):
\t\t\tx = x * 2
\t\treturn x
=======
\tdef forward(self, x):
\t\tfor _ in range(self.layers):
\t\t\tx = x * 1.5 + 0.1
\t\treturn x
>>>>>>> REPLACE
</edit>
"""
QWEN_TABS_RESULT = PARENT.replace("            x = x * 2\n", "            x = x * 1.5 + 0.1\n")

# The same model misquoting a line (2.0 for 2) while still indenting with tabs.
QWEN_TABS_MISQUOTED = QWEN_TABS.replace("\t\t\tx = x * 2\n", "\t\t\tx = x * 2.0\n", 1)
QWEN_TABS_MISQUOTED_ERROR = (
    "Edit block 1 of 1 (train_gpt.py): the SEARCH text does not match any part of train_gpt.py, even "
    "allowing for trailing whitespace, blank lines at its ends, a consistent indentation offset and "
    "tabs in the indentation read as 4 spaces. SEARCH must copy existing lines exactly. The closest "
    "lines in train_gpt.py are:\n"
    "20 |     def forward(self, x):\n"
    "21 |         for _ in range(self.layers):\n"
    "22 |             x = x * 2\n"
    "23 |         return x"
)

# ------------------------------------------------------------------ GPT-4.1: Markdown headings
GPT41_HEADINGS = """## Hypothesis
Add a residual path in `Model.forward` so each layer refines `x` instead of replacing it.

## Rationale
Residual streams are what make deep stacks trainable (He et al., 2016; every record in the challenge
keeps one). Expected effect: lower val_bpb at the same parameter count, no extra bytes.

**Risk:** the activations grow faster with depth; the tuner can lower NUM_LAYERS if it hurts.

## Edit
<edit path="train_gpt.py">
<<<<<<< SEARCH
        for _ in range(self.layers):
            x = x * 2
=======
        for _ in range(self.layers):
            x = x + x * 2
>>>>>>> REPLACE
</edit>

Let me know if you want me to also scale the residual branch.
"""
GPT41_HYPOTHESIS = "Add a residual path in `Model.forward` so each layer refines `x` instead of replacing it."
GPT41_RATIONALE = (
    "Residual streams are what make deep stacks trainable (He et al., 2016; every record in the challenge\n"
    "keeps one). Expected effect: lower val_bpb at the same parameter count, no extra bytes.\n\n"
    "**Risk:** the activations grow faster with depth; the tuner can lower NUM_LAYERS if it hurts."
)
GPT41_RESULT = PARENT.replace("            x = x * 2\n", "            x = x + x * 2\n")

# ------------------------------------------------------------------------ o3: bold labels, terse
O3_BOLD = """**Hypothesis:** Default MATRIX_LR 0.04 -> 0.03; 4 layers at 0.04 sits past the stable edge.

**Rationale:** Lower LR trades a little early progress for a smoother late loss; no byte cost.

```python
<<<<<<< SEARCH
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
=======
    Knob("MATRIX_LR", float, 0.03, low=0.005, high=0.2, log=True),
>>>>>>> REPLACE
<<<<<<< SEARCH
    lr = float(os.environ.get("MATRIX_LR", 0.04))
=======
    lr = float(os.environ.get("MATRIX_LR", 0.03))
>>>>>>> REPLACE
```
"""
O3_HYPOTHESIS = "Default MATRIX_LR 0.04 -> 0.03; 4 layers at 0.04 sits past the stable edge."
O3_RATIONALE = "Lower LR trades a little early progress for a smoother late loss; no byte cost."
O3_RESULT = PARENT.replace("float, 0.04, low", "float, 0.03, low").replace(
    '"MATRIX_LR", 0.04))', '"MATRIX_LR", 0.03))'
)

# --------------------------------------------------------------- Llama 3: plain "Label:" lines
LLAMA_PLAIN = """Hypothesis: Warm the model up with one extra layer at train time.

Rationale: A deeper model fits better; the default of 4 layers is small for the budget.

<edit path="train_gpt.py">
<<<<<<< SEARCH
    model = Model(int(os.environ.get("NUM_LAYERS", 4)))
=======
    model = Model(int(os.environ.get("NUM_LAYERS", 4)) + 1)
>>>>>>> REPLACE
</edit>
"""
LLAMA_PLAIN_RESULT = PARENT.replace('"NUM_LAYERS", 4)))', '"NUM_LAYERS", 4)) + 1)')

# ------------------------------------------------- Claude: "# ... existing code ..." elision
CLAUDE_ELIDED = """<hypothesis>Scale the learning rate by 1/sqrt(depth) so deeper models stay stable</hypothesis>
<rationale>
muP-style depth scaling keeps the update size per layer roughly constant as NUM_LAYERS grows, so the
tuner can explore depth without retuning MATRIX_LR.
</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
def train():
    model = Model(int(os.environ.get("NUM_LAYERS", 4)))
    # ... existing code ...
    return model.forward(lr)
=======
def train():
    model = Model(int(os.environ.get("NUM_LAYERS", 4)))
    # ... existing code ...
    lr = lr / max(1, model.layers) ** 0.5
    return model.forward(lr)
>>>>>>> REPLACE
</edit>
"""
CLAUDE_ELIDED_RESULT = PARENT.replace(
    "    return model.forward(lr)\n",
    "    lr = lr / max(1, model.layers) ** 0.5\n    return model.forward(lr)\n",
)

# GPT-4.1 with two bare `...` gaps in one block, one of them spanning a blank line and a method.
GPT41_TWO_GAPS = """<hypothesis>Store a gain on the model and use it in forward</hypothesis>
<rationale>Makes the per-layer multiplier a model attribute that later changes can learn.</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
class Model:
    def __init__(self, layers):
    ...
    def forward(self, x):
    ...
            x = x * 2
=======
class Model:
    def __init__(self, layers):
        self.gain = 2
    ...
    def forward(self, x):
    ...
            x = x * self.gain
>>>>>>> REPLACE
</edit>
"""
GPT41_TWO_GAPS_RESULT = PARENT.replace(
    "    def __init__(self, layers):\n", "    def __init__(self, layers):\n        self.gain = 2\n"
).replace("            x = x * 2\n", "            x = x * self.gain\n")

# o3 eliding in SEARCH but writing REPLACE out without the `...`: the pairing is broken.
O3_UNPAIRED_ELISION = """**Hypothesis:** Return the mean of the layer outputs instead of the last one.

**Rationale:** Averaging acts like a cheap ensemble over depth.

<<<<<<< SEARCH
    def forward(self, x):
        ...
        return x
=======
    def forward(self, x):
        total = 0.0
        for _ in range(self.layers):
            x = x * 2
            total = total + x
        return total / self.layers
>>>>>>> REPLACE
"""
O3_UNPAIRED_ELISION_ERROR = (
    "Edit block 1 of 1 (train_gpt.py): SEARCH has 1 `...` line(s) and REPLACE has 0. A `...` line "
    "stands for unchanged lines of the file; each one in SEARCH needs its own `...` in REPLACE, at the "
    "same place among the lines around it. Or quote the lines in full."
)
O3_FULL = O3_UNPAIRED_ELISION.replace(
    "    def forward(self, x):\n        ...\n        return x\n=======",
    "    def forward(self, x):\n        for _ in range(self.layers):\n            x = x * 2\n"
    "        return x\n=======",
)
O3_FULL_RESULT = PARENT.replace(
    "        for _ in range(self.layers):\n            x = x * 2\n        return x\n",
    "        total = 0.0\n        for _ in range(self.layers):\n            x = x * 2\n"
    "            total = total + x\n        return total / self.layers\n",
)

# ------------------------------------ Llama in a repair turn: copies the quoted line numbers
LLAMA_MISQUOTED = """<hypothesis>Add one to every layer's output</hypothesis>
<rationale>A constant shift gives the stack a bias term it lacks.</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
    def forward(self, x):
        for layer in range(self.layers):
            x = x * 2
=======
    def forward(self, x):
        for layer in range(self.layers):
            x = x * 2 + 1
>>>>>>> REPLACE
</edit>
"""
LLAMA_MISQUOTED_ERROR = (
    "Edit block 1 of 1 (train_gpt.py): the SEARCH text does not match any part of train_gpt.py, even "
    "allowing for trailing whitespace, blank lines at its ends and a consistent indentation offset. "
    "SEARCH must copy existing lines exactly. The closest lines in train_gpt.py are:\n"
    "20 |     def forward(self, x):\n"
    "21 |         for _ in range(self.layers):\n"
    "22 |             x = x * 2"
)
LLAMA_NUMBERED = """I apologize for the mistake. Here is the corrected edit:

<hypothesis>Add one to every layer's output</hypothesis>
<rationale>A constant shift gives the stack a bias term it lacks.</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
20 |     def forward(self, x):
21 |         for _ in range(self.layers):
22 |             x = x * 2
=======
20 |     def forward(self, x):
21 |         for _ in range(self.layers):
22 |             x = x * 2 + 1
>>>>>>> REPLACE
</edit>
"""
LLAMA_NUMBERED_RESULT = PARENT.replace("            x = x * 2\n", "            x = x * 2 + 1\n")

# ----------------------------------------- DeepSeek-R1: a draft edit inside <think>, then the answer
R1_DRAFT_IN_THINK = """<think>
Okay, the parent doubles x at every layer. My first idea: multiply by four instead.

<hypothesis>Multiply by four per layer</hypothesis>
<edit path="train_gpt.py">
<<<<<<< SEARCH
            x = x * 2
=======
            x = x * 4
>>>>>>> REPLACE
</edit>

Wait, that makes the activations grow even faster. Lowering the learning rate is safer. The knob
default and the fallback in train() both say 0.04, so both must change.
</think>

<hypothesis>Lower the default MATRIX_LR to 0.03 for a smoother late loss</hypothesis>
<rationale>
With activations doubling per layer the effective step is large; a lower rate should help.
</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
=======
    Knob("MATRIX_LR", float, 0.03, low=0.005, high=0.2, log=True),
>>>>>>> REPLACE
<<<<<<< SEARCH
    lr = float(os.environ.get("MATRIX_LR", 0.04))
=======
    lr = float(os.environ.get("MATRIX_LR", 0.03))
>>>>>>> REPLACE
</edit>
"""
R1_HYPOTHESIS = "Lower the default MATRIX_LR to 0.03 for a smoother late loss"
R1_RESULT = O3_RESULT

# Qwen3 / R1 behind a chat template that opens <think> in the prompt: the reply only closes it.
QWEN3_OPENED_BY_TEMPLATE = """The user wants one change. Doubling could become tripling:

<hypothesis>Triple per layer</hypothesis>
<<<<<<< SEARCH
            x = x * 2
=======
            x = x * 3
>>>>>>> REPLACE

No, warmup() is dead code; better to make evaluate return the forward pass.
</think>

**Hypothesis:** Make `evaluate()` run the model instead of returning a constant.

**Rationale:** A constant evaluation gives no signal.

<<<<<<< SEARCH
def evaluate():
    return 0.0
=======
def evaluate():
    return Model(1).forward(1.0)
>>>>>>> REPLACE
"""
QWEN3_HYPOTHESIS = "Make `evaluate()` run the model instead of returning a constant."
QWEN3_RESULT = PARENT.replace(
    "def evaluate():\n    return 0.0\n", "def evaluate():\n    return Model(1).forward(1.0)\n"
)

# R1 whose reasoning ran to the token limit: an opening <think> and no answer.
R1_THINK_ONLY_CUT = """<think>
Let me think about what limits this model. The forward pass doubles x per layer, so with 4 layers
the output is 16 times the input. The learning rate is 0.04. If I change the multiplier, then
"""
# R1 that closed its reasoning and then stopped without answering.
R1_THINK_ONLY_CLOSED = """<think>
Several options: depth, learning rate, the multiplier. I will go with depth.
</think>
"""

# -------------------------------------- GPT-4.1 cut off after the first of two blocks: it parses
GPT41_CUT_AFTER_FIRST_BLOCK = """<hypothesis>Make the per-layer multiplier a tunable WIDTH_MULT knob</hypothesis>
<rationale>
The multiplier of 2 was never tuned; exposing it lets the sampler find a better one.
</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
]
=======
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
    Knob("WIDTH_MULT", int, 2, low=1, high=4),
]
>>>>>>> REPLACE
"""

# Claude shortening REPLACE only: SEARCH quotes forward in full, REPLACE ends in a "rest unchanged"
# comment. Taken literally it compiles (forward would return None), so only the pairing check stops it.
CLAUDE_REPLACE_ONLY_ELISION = """<hypothesis>Skip the doubling on the last layer so the output keeps its scale</hypothesis>
<rationale>
The final doubling only rescales what the head sees; dropping it should make the loss better conditioned.
</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
    def forward(self, x):
        for _ in range(self.layers):
            x = x * 2
        return x
=======
    def forward(self, x):
        for _ in range(self.layers - 1):
            x = x * 2
        # ... rest of forward unchanged ...
>>>>>>> REPLACE
</edit>
"""
CLAUDE_REPLACE_ONLY_ELISION_ERROR = (
    "Edit block 1 of 1 (train_gpt.py): REPLACE has 1 more `...` line(s) than SEARCH. A `...` line stands "
    "for unchanged lines and needs its partner in SEARCH, at the same place among the lines around it; "
    "write new code out in full."
)
CLAUDE_REPLACE_IN_FULL = CLAUDE_REPLACE_ONLY_ELISION.replace(
    "        # ... rest of forward unchanged ...\n", "        return x\n"
)
CLAUDE_REPLACE_IN_FULL_RESULT = PARENT.replace("range(self.layers):", "range(self.layers - 1):")
