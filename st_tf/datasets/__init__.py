"""Bundled datasets: generators of their records and their gin `prepare` fns.

`st_tf.data` holds the generic input code (schema, decoders, parsers,
pipelines, sharded writing); each package here is one dataset built on it.
"""
