"""Runs function directories (function.yaml + handler) the way Nuclio would."""
