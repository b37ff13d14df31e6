"""The voice side of an identity profile: a clean reference clip and its measurements."""
