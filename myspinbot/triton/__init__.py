"""Triton Inference Server: the embedded server, the model repository and the client."""
