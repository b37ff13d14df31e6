"""Item 9: "euler" is mapped to DDIM in the product's table."""

from mutation import Edit, Mutation, main

MUTATIONS = [
    Mutation(
        "a",
        "euler -> DDIMScheduler",
        [Edit("myspinbot/imaging/txt2img.py", '    "euler": "EulerDiscreteScheduler",\n',
              '    "euler": "DDIMScheduler",\n')],
        ["tests/imaging/test_txt2img.py", "-k", "euler and means"],
    ),
    Mutation(
        "b",
        "euler -> DDIMScheduler (the Triton image against the independent reference)",
        [Edit("myspinbot/imaging/txt2img.py", '    "euler": "EulerDiscreteScheduler",\n',
              '    "euler": "DDIMScheduler",\n')],
        ["tests/imaging/test_txt2img.py", "-k", "euler and equals"],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
