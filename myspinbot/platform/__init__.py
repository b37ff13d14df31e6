"""`myspinbot up`: the platform on one machine.

`runtime/` is the generic function runtime (one replica of one function); this package
is what runs them all together: it starts the embedded servers (Redis, S3, Triton) and
the function replicas and the gateway, and keeps every one of them running.
"""
