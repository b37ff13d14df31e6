"""Audio/video helpers shared by the pipeline steps."""
