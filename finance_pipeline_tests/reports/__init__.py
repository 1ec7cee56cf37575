"""Reports: store, CSV builders, assets and exports."""
