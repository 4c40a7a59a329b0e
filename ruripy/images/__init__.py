"""Getting root filesystems: catalogs, downloads, extraction and export."""
