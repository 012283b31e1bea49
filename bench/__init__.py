"""`make bench`: what every request costs, beside the raw Vault floor, and how it scales.

Run with `python -m bench`; see README "Performance" for what the numbers mean.
"""
