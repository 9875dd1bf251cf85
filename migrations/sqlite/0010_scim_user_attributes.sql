-- SCIM keeps the User attributes the identity provider sets, each on its own (RFC 7643 §4.1), so
-- that PATCH can replace and remove them one by one: userName apart from the work e-mail (Entra
-- sends the userPrincipalName as userName, the mail attribute as the e-mail), displayName and the
-- name parts. users.email and users.name stay what Arno uses; SCIM derives them from these.
-- scim_id stays the marker "provisioned by SCIM": SCIM sees and changes only those accounts.
ALTER TABLE users ADD COLUMN scim_user_name TEXT;       -- lower-cased; unique among SCIM users
ALTER TABLE users ADD COLUMN scim_email TEXT;           -- the work e-mail, NULL when the IdP sent none
ALTER TABLE users ADD COLUMN scim_display_name TEXT;
ALTER TABLE users ADD COLUMN scim_name_formatted TEXT;
ALTER TABLE users ADD COLUMN scim_given_name TEXT;
ALTER TABLE users ADD COLUMN scim_family_name TEXT;

-- What SCIM showed for provisioned users until now: userName, the e-mail, name.formatted and
-- displayName were all Arno's address and name.
UPDATE users SET scim_user_name = email, scim_email = email, scim_display_name = name, scim_name_formatted = name
 WHERE scim_id IS NOT NULL;

CREATE UNIQUE INDEX users_scim_user_name ON users (scim_user_name);
