"""Advisory memos (v1 API): daily memos grounded in the CFO metrics and alerts marts."""
