"""Reading whole scanned forms by a template: registration, form dropout, zones read, one record per page."""
