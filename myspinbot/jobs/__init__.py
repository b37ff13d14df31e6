"""Jobs: the model, progress over weighted steps, events, and the handler wrapper."""
