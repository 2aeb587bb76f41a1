"""Use cases: the jobs slicelab does, each written once.

The command line (:mod:`slicelab.service.cli`), the REST API (:mod:`slicelab.service.api`) and
the RQ task functions (:mod:`slicelab.workers`) only parse their input, call one use case and
print or return its result, so the same input gives the same labels, columns and provenance
whichever door it came through.
"""
