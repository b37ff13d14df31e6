"""Exceptions a handler raises to tell the runtime what to do with a job."""


class JobCancelled(Exception):
    """The job was cancelled; it ends `cancelled` and is not retried."""


class PermanentError(Exception):
    """The job cannot succeed (bad input, missing model): fail now, do not retry.

    The message is shown to the person who submitted the job, so write it for them.
    """
