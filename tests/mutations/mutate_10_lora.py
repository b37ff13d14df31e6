"""Item 10: (a) the trainer learns to predict zeros (its target is zeros, not the
noise); (b) training changes the base UNet too, not only the LoRA (the loss drops, but
turning the adapter off no longer gives the base model back)."""

from mutation import Edit, run

TEST = "tests/training/test_lora.py::test_training_lowers_the_loss_on_a_fixed_batch"
TRAIN_TARGET = (
    "        target = self._target(latents, noise, timesteps)\n        with self._autocast():\n"
)

if __name__ == "__main__":
    a = run(
        "the LoRA learns to output zeros",
        [Edit("myspinbot/training/lora.py", TRAIN_TARGET,
              TRAIN_TARGET.replace("self._target(latents, noise, timesteps)",
                                   "torch.zeros_like(noise)"))],
        [TEST],
    )  # fmt: skip
    b = run(
        "the base UNet is trained along with the LoRA",
        [Edit("myspinbot/training/lora.py",
              "        params = [p for p in self._unet.parameters() if p.requires_grad]\n",
              "        self._unet.requires_grad_(True)\n"
              "        params = [p for p in self._unet.parameters() if p.requires_grad]\n")],
        [TEST],
    )  # fmt: skip
    raise SystemExit(max(a, b))
