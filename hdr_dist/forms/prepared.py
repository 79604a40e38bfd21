"""What every worker prepares once per template: the template read, its reference's features for
registration and its print mask for dropout. Both the page stage and the review page take it."""

from __future__ import annotations

import functools

from hdr_dist.forms import registration, zones
from hdr_dist.forms.template import Template, load


@functools.lru_cache(maxsize=4)
def prepared_template(path: str, dropout: str) -> tuple[Template, registration.Reference, zones.Dropout]:
    """The template, its reference's features and its print mask: made once per worker process."""
    template = load(path)
    return template, registration.Reference(template.reference_image()), zones.Dropout(template, dropout)
