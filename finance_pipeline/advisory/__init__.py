"""Advisory memos (seeds/004): daily memos grounded in the CFO metrics and alerts marts."""
