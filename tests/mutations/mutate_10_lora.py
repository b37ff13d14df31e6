"""Item 10: (a) the trainer learns to predict zeros (its target is zeros, not the
noise); (b) training changes the base UNet too, not only the LoRA: the loss drops as
before, but switching the adapter off no longer gives the base model back."""

from mutation import Edit, Mutation, main

FILE = "myspinbot/training/lora.py"
TEST = "tests/training/test_lora.py::test_training_lowers_the_loss_on_a_fixed_batch"
TARGET = (
    "        target = self._target(latents, noise, timesteps)\n        with self._autocast():\n"
)
PARAMS = "        params = [p for p in self._unet.parameters() if p.requires_grad]\n"
MUTATIONS = [
    Mutation(
        "a",
        "the LoRA learns to output zeros",
        [Edit(FILE, TARGET, TARGET.replace("self._target(latents, noise, timesteps)",
                                           "torch.zeros_like(noise)"))],
        [TEST],
    ),
    Mutation(
        "b",
        "the base UNet is trained along with the LoRA",
        [Edit(FILE, PARAMS, "        self._unet.requires_grad_(True)\n" + PARAMS)],
        [TEST],
    ),
]  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(main(MUTATIONS))
