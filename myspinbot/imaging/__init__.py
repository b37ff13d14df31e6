"""Pictures: decoding uploads and finding faces (shared by training, the animator, the stage
step and the gateway), the video's portrait, and text-to-image through Triton."""
