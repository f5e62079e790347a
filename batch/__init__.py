"""Batch scoring on Spark: the service's model, runtime, checks and predict path, over files.

`python -m batch score|submit|status` (the Makefile's score targets); job.py runs one job,
spark.py holds what runs on Spark, score.py and rows.py what runs on each chunk of rows.
"""
