-- A workspace's slug: the 001 products API addresses a product (a workspace) by its id or its slug.
-- Derived from the name at creation (tenancy.create_workspace), unique within the organization.
-- Existing workspaces take their id as slug: always unique and URL-safe, and a slug derived from a
-- name never contains "_", so an id and a slug cannot be confused.
ALTER TABLE app.workspaces ADD COLUMN slug TEXT;
UPDATE app.workspaces SET slug = id WHERE slug IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS workspaces_org_slug ON app.workspaces (org_id, slug);
