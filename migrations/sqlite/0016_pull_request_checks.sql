-- What the checks on a pull request's head commit said when Arno last looked (JSON: state, the
-- commit, counts, the first failing names); NULL until it has looked.
ALTER TABLE pull_requests ADD COLUMN checks TEXT;
