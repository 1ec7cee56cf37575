"""Reports: the report store and catalogue, month-end CSV reports and on-demand exports."""
