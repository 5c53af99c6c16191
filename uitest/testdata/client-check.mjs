// Checks our @hashicorp/vault-client-typescript stand-in (bootstrap/vault-ui/packages/vault-client-typescript) against a
// real Vault, called the way the Vault UI calls it. Run by uitest's TestVaultClientStandIn:
//   VAULT_ADDR=... VAULT_TOKEN=... node client-check.mjs /path/to/generated/index.js
// The Vault has userpass at userpass/ (user "ui-user", password "ui-pass") and KV v2 at secret/.
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';

const c = await import(pathToFileURL(process.argv[2]).href);
const { VAULT_ADDR, VAULT_TOKEN } = process.env;

const seen = [];
let answered = 0;
const configuration = new c.Configuration({
  basePath: `${VAULT_ADDR}/v1`,
  middleware: [
    {
      // as the UI's api service does: the token unless the call set one (an empty one means unauthenticated)
      pre: async ({ url, init }) => {
        const headers = new Headers(init.headers);
        if (!headers.has('X-Vault-Token')) headers.set('X-Vault-Token', VAULT_TOKEN);
        if (headers.get('X-Vault-Token') === '') headers.delete('X-Vault-Token');
        seen.push(`${init.method} ${url.replace(VAULT_ADDR, '')}`);
        return { url, init: { ...init, headers } };
      },
    },
    {
      post: async () => {
        answered++;
      },
    },
  ],
});
const auth = new c.AuthApi(configuration);
const secrets = new c.SecretsApi(configuration);
const sys = new c.SystemApi(configuration);

const rejects = async (promise, status) => {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof c.ResponseError, `want a ResponseError, got ${e}`);
    assert.equal(e.response.status, status);
    return e;
  }
  assert.fail(`want a ${status} ResponseError, got success`);
};

// An operation without a response schema answers the whole document.
const self = await auth.tokenLookUpSelf();
assert.ok(self.data.policies.includes('root'), `policies: ${JSON.stringify(self.data.policies)}`); // never the lookup itself: it holds the token

// One with a schema answers its data, date-time fields as Dates; path parameters in the UI's order, then the body.
const written = await secrets.kvV2Write('app/db', 'secret', { data: { password: 'kv-value' } });
assert.equal(written.version, 1);
assert.ok(written.created_time instanceof Date, `created_time: ${written.created_time}`);
const read = await secrets.kvV2Read('app/db', 'secret');
assert.equal(read.data.password, 'kv-value');

// A required query parameter with its enum; the path is encoded as one segment, as the original client does.
const list = await secrets.kvV2List('app', 'secret', c.KvV2ListListEnum.TRUE);
assert.deepEqual(list.keys, ['db']);

// Errors: a ResponseError carrying the Response.
const missing = await rejects(secrets.kvV2Read('nope', 'secret'), 404);

// A path parameter never moves the call to another path ("." and ".." would survive encoding).
for (const bad of ['..', '.', 'a/../b']) {
  await assert.rejects(secrets.kvV2Read(bad, 'secret'), /may not be/, `path parameter ${bad}`);
}
assert.equal(missing.response.url, `${VAULT_ADDR}/v1/secret/data/nope`);

// initOverrides as headers (the UI's buildHeaders): an unauthenticated call; as a function adding to the query.
const mounts = await sys.internalUiListEnabledVisibleMounts();
assert.ok(mounts.auth['userpass/'] && mounts.secret['secret/'], JSON.stringify(mounts));
const unauthenticated = await sys.internalUiListEnabledVisibleMounts({ headers: { 'X-Vault-Token': '' } });
assert.deepEqual(unauthenticated, { auth: {}, secret: {} }); // no mount has listing_visibility=unauth
await secrets.kvV2List('', 'secret', c.KvV2ListListEnum.TRUE, async ({ init, context }) => {
  context.query = { ...context.query, extra: 'x' };
  return init;
});
assert.equal(seen.at(-1), 'GET /v1/secret/metadata//?list=true&extra=x');

// A login: path parameters (username, mount) and the JSON body.
const login = await auth.userpassLogin('ui-user', 'userpass', { password: 'ui-pass' });
assert.ok(login.auth.client_token, JSON.stringify(login));
await rejects(auth.userpassLogin('ui-user', 'userpass', { password: 'wrong' }), 400);

// The token's capabilities, as the UI asks them for every page.
const caps = await sys.queryTokenSelfCapabilities({ paths: ['secret/data/app/db'] });
assert.deepEqual(caps.data['secret/data/app/db'], ['root']);

// The Raw variant: the Response and value().
const raw = await sys.readSanitizedConfigurationStateRaw({});
assert.equal(raw.raw.status, 200);
assert.ok((await raw.value()).data);

// An Enterprise-only operation: a 404, as an OSS Vault answers for its path.
await rejects(sys.uiConfigListCustomMessages(true), 404);
assert.equal(c.SystemListSyncDestinationsListEnum.TRUE, 'true');

assert.equal(answered, seen.length); // every request went through both middlewares (the Enterprise-only call sent none)
console.log(`ok: ${seen.length} requests`);
