"""What every layer shares: one-line errors, storage paths and URIs, the Parquet tables' schemas, the seed
studies' figures, joining the Ray cluster, names of files and members, and Ray's unstable names.
"""
