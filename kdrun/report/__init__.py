"""kdrun-table: aggregate sweep cells into tables and plots."""
