"""Results: the cell store, results on disk, tables, rendering, the support matrix."""
