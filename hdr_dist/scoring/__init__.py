"""What ``hdr score`` adds to the bulk engine (``hdr_dist.bulk``): its page stage (one image, or one
field's strip, per page), its actor and answer schema, its config and its summary.
"""
