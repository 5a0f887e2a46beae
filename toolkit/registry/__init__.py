"""OCI distribution client and the manifest engine (merge, verify). No Docker engine needed."""
