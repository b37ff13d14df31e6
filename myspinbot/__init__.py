"""MySpinBot: the code the functions and the gateway share."""

__version__ = "0.1.0"
