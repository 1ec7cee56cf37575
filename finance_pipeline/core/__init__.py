"""Core layer: subscription history, the cash ledger and FX rates, rebuilt from raw."""
