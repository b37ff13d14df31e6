"""The `myspinbot` command line."""
