"""Development tools for finance_pipeline, kept out of the product wheel.

- `standin`: the stateful local Stripe stand-in served to the real ``stripe`` SDK;
- `simulator`: a seeded Stripe history generator with its own independent ground truth;
- `demo`: the README's first command (simulate, serve, materialize, print where to look);
- `processes`: how the demo and the benches start the stand-in, the API and the daemon;
- `pytest_plugin`: fixtures that start the stand-in on an ephemeral port.

The product (`finance_pipeline`) never imports this package; a test pins that direction.
"""
