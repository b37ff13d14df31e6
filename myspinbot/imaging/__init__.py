"""Text-to-image: exporting a diffusers model for Triton and the diffusion loop around it."""
