"""Report builders: the content model, Markdown, XLSX, JSON and period audits, for the reporter and the web."""
