"""Reading and reporting: the reading worklist, reports and their templates, critical results,
a child's imaging timeline and turnaround times."""
