-- Every API request of a credential upserts the same app.rate_limit_windows row, so a count that
-- waits delays all of them (they queue on its row lock). Logged, the count wrote WAL and its
-- commit record waited behind the bulk writes of the runs for WAL buffer space and flushes
-- (bench/README.md, "Soak: load held"). Unlogged, a count writes no WAL: the price is that
-- PostgreSQL empties the table after a crash (and a standby has none of it), so every credential
-- starts its current windows again from zero then.
ALTER TABLE app.rate_limit_windows SET UNLOGGED;
