-- gprxy example: a multi-tenant schema whose row-level security trusts only the signed identity
-- context (schema gprxy, installed by `gprxy db init`). Safe to run again.

CREATE TABLE IF NOT EXISTS public.users (
  id           text PRIMARY KEY DEFAULT gprxy.user_id(),      -- the token's sub, e.g. 'auth0|65a1b2c3'
  tenant_id    text NOT NULL DEFAULT gprxy.tenant_id(),
  email        text NOT NULL,
  display_name text,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS users_tenant_id_idx ON public.users (tenant_id);

CREATE TABLE IF NOT EXISTS public.posts (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id  text NOT NULL DEFAULT gprxy.tenant_id(),
  owner_id   text NOT NULL DEFAULT gprxy.user_id() REFERENCES public.users (id),
  title      text NOT NULL,
  body       text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS posts_tenant_id_idx ON public.posts (tenant_id);

GRANT ALL ON public.users, public.posts TO gprxy_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.users, public.posts TO gprxy_writer;
GRANT SELECT ON public.users, public.posts TO gprxy_reader;

ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
ALTER TABLE public.posts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.posts FORCE ROW LEVEL SECURITY;

-- Everyone sees their own tenant.
DROP POLICY IF EXISTS users_same_tenant ON public.users;
CREATE POLICY users_same_tenant ON public.users FOR SELECT
  USING (tenant_id = (SELECT gprxy.tenant_id()));
DROP POLICY IF EXISTS posts_same_tenant ON public.posts;
CREATE POLICY posts_same_tenant ON public.posts FOR SELECT
  USING (tenant_id = (SELECT gprxy.tenant_id()));

-- Writers create and change only their own rows, inside their own tenant (readers have no write grants).
DROP POLICY IF EXISTS users_insert_self ON public.users;
CREATE POLICY users_insert_self ON public.users FOR INSERT
  WITH CHECK (id = (SELECT gprxy.user_id()) AND tenant_id = (SELECT gprxy.tenant_id()));
DROP POLICY IF EXISTS users_update_self ON public.users;
CREATE POLICY users_update_self ON public.users FOR UPDATE
  USING (id = (SELECT gprxy.user_id()))
  WITH CHECK (id = (SELECT gprxy.user_id()) AND tenant_id = (SELECT gprxy.tenant_id()));
DROP POLICY IF EXISTS posts_insert_own ON public.posts;
CREATE POLICY posts_insert_own ON public.posts FOR INSERT
  WITH CHECK (owner_id = (SELECT gprxy.user_id()) AND tenant_id = (SELECT gprxy.tenant_id()));
DROP POLICY IF EXISTS posts_update_own ON public.posts;
CREATE POLICY posts_update_own ON public.posts FOR UPDATE
  USING (owner_id = (SELECT gprxy.user_id()) AND tenant_id = (SELECT gprxy.tenant_id()))
  WITH CHECK (owner_id = (SELECT gprxy.user_id()) AND tenant_id = (SELECT gprxy.tenant_id()));
DROP POLICY IF EXISTS posts_delete_own ON public.posts;
CREATE POLICY posts_delete_own ON public.posts FOR DELETE
  USING (owner_id = (SELECT gprxy.user_id()) AND tenant_id = (SELECT gprxy.tenant_id()));

-- Administrators (the token role pg_admin: use your own admin role's name) see and change everything.
DROP POLICY IF EXISTS users_admin ON public.users;
CREATE POLICY users_admin ON public.users FOR ALL
  USING ((SELECT gprxy.has_role('pg_admin')))
  WITH CHECK ((SELECT gprxy.has_role('pg_admin')));
DROP POLICY IF EXISTS posts_admin ON public.posts;
CREATE POLICY posts_admin ON public.posts FOR ALL
  USING ((SELECT gprxy.has_role('pg_admin')))
  WITH CHECK ((SELECT gprxy.has_role('pg_admin')));

-- Sample data for the users of `gprxy demo` (run as the database admin: it bypasses row-level security).
INSERT INTO public.users (id, tenant_id, email, display_name) VALUES
  ('auth0|alice0001',    'tenant-a', 'alice@example.com',    'Alice Writer'),
  ('auth0|sathwick0003', 'tenant-a', 'sathwick@example.com', 'Sathwick Admin'),
  ('auth0|bob00002',     'tenant-b', 'bob@example.com',      'Bob Reader'),
  ('auth0|carol0004',    'tenant-b', 'carol@example.com',    'Carol Writer')
ON CONFLICT (id) DO NOTHING;
INSERT INTO public.posts (id, tenant_id, owner_id, title, body) VALUES
  ('00000000-0000-4000-8000-00000000a001', 'tenant-a', 'auth0|alice0001',    'Tenant A roadmap',  'Ship the proxy.'),
  ('00000000-0000-4000-8000-00000000a002', 'tenant-a', 'auth0|sathwick0003', 'Tenant A on-call',  'Sathwick this week.'),
  ('00000000-0000-4000-8000-00000000b001', 'tenant-b', 'auth0|bob00002',     'Tenant B launch',   'Launch is on Friday.'),
  ('00000000-0000-4000-8000-00000000b002', 'tenant-b', 'auth0|carol0004',    'Tenant B budget',   'Confidential numbers.')
ON CONFLICT (id) DO NOTHING;
