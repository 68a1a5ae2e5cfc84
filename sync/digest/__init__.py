"""Stage 6, report: the monitors' digest of data queries, one self-contained HTML file.

`source` reads from REDCap what the digest needs; `table` turns the dq_query rows into the rows
a monitor reads (site, subject, labels, the value behind the query, age, the site's response);
`links` builds the address of the exact form and instance in REDCap's data entry page; `page`
renders the summary and the table, with the filter and sort script inlined, so the file works
offline and can be mailed.
"""
from sync.digest.source import Digest, queries_report

__all__ = ["Digest", "queries_report"]
