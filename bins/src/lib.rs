//! Glue shared by the crm-substrate binaries: settings, tracing, progress.
