"""Reading whole scanned forms by a template, on the bulk engine (``hdr_dist.bulk``): registration, form
dropout, zones read, one record per page."""
