// A real OpenID provider for the integration tests: panva/oidc-provider on loopback, with two
// clients (`arno`, `arno-second`), PKCE, dev login/consent pages (any password), and a `groups`
// claim. Account "alice" is in `arno-admins` and `design-team`; anyone else in `staff`. Accounts
// whose id starts with `unverified-` have `email_verified: false` (the IdP never checked the address).
//
//   PORT=… REDIRECTS=url1,url2 node op.mjs   → prints "READY <issuer>" when listening
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const [redirect1, redirect2] = (process.env.REDIRECTS || '').split(',');

const groupsOf = (id) => (id === 'alice' ? ['arno-admins', 'design-team'] : ['staff']);

const provider = new Provider(issuer, {
  clients: [
    { client_id: 'arno', client_secret: 'arno-secret', redirect_uris: [redirect1],
      post_logout_redirect_uris: [redirect1.replace(/\/auth\/oidc\/.*$/, '/login')],
      grant_types: ['authorization_code'], response_types: ['code'] },
    { client_id: 'arno-second', client_secret: 'second-secret', redirect_uris: [redirect2],
      grant_types: ['authorization_code'], response_types: ['code'] },
  ],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'],
  },
  // Put the scope's claims into the ID token too (Arno reads groups from it, or from userinfo).
  conformIdTokenClaims: false,
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@corp.example`, email_verified: !id.startsWith('unverified-'), name: `Test ${id}`,
      preferred_username: id, groups: groupsOf(id) }),
  }),
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['arno-test-only'] },
});
provider.proxy = false;
provider.listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
