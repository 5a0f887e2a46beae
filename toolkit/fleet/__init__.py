"""Everything that touches build hosts over SSH: facts, plans, and applying them."""
