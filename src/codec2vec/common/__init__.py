"""What every stage of the pipeline shares: `errors.py` (the errors that reach the user as one line, exit 2),
`files.py` (the one way to write safely: atomic files and folders,
fsync, sha256), `progress.py` (progress of the long verbs: a bar on a terminal, a plain line in a log) and
`options.py` (options dataclasses: `option(...)` fields that the CLI turns into flags, and the one converter of
strings to typed values for flags, YAML keys and environment variables). Importing this package loads nothing
heavy."""
