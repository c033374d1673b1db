-- What authenticated each request: the token's id, the client
-- certificate's name, or both (`token:<id> certificate:<name>`), so that
-- a referrer's rows say which credential acted (issue #21). Ids and
-- certificate names only, never the secret.
ALTER TABLE audit_log ADD COLUMN credential TEXT;
