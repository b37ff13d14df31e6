"""Training an identity profile: dataset preparation, LoRA training, export."""
