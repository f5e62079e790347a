"""The generic training pipeline.

load -> validate -> split -> train -> evaluate -> gate -> register
"""
