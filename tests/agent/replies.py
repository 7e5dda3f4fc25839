"""Scripted model replies shared by the agent tests, and the program text each one should produce."""

from __future__ import annotations

from tests.agent.conftest import PARENT

CLEAN_REPLY = """<hypothesis>Triple the activation in forward and expose a width knob</hypothesis>
<rationale>
A larger multiplier should help; WIDTH_MULT lets the tuner decide.
</rationale>
<edit path="train_gpt.py">
<<<<<<< SEARCH
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
]
=======
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
    Knob("WIDTH_MULT", int, 3, low=1, high=4),
]
>>>>>>> REPLACE
<<<<<<< SEARCH
            x = x * 2
=======
            x = x * int(os.environ.get("WIDTH_MULT", 3))
>>>>>>> REPLACE
</edit>
"""

CLEAN_RESULT = PARENT.replace(
    '    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),\n]',
    '    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),\n'
    '    Knob("WIDTH_MULT", int, 3, low=1, high=4),\n]',
).replace("            x = x * 2\n", '            x = x * int(os.environ.get("WIDTH_MULT", 3))\n')


def reply_with(
    search: str, replace: str, path: str = "train_gpt.py", hypothesis: str = "Try a change"
) -> str:
    return (
        f"<hypothesis>{hypothesis}</hypothesis>\n<rationale>Because.</rationale>\n"
        f'<edit path="{path}">\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</edit>\n'
    )


GOOD_FIX = reply_with("            x = x * 2\n", "            x = x * 3\n", hypothesis="Multiply by three")
GOOD_FIX_RESULT = PARENT.replace("            x = x * 2\n", "            x = x * 3\n")
