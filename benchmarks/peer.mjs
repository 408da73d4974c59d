// The peer of the benchmark: npm oidc-provider (panva), one Node process, issuing JWT access
// tokens to a client-credentials client. Reuses the copy installed for the tests (tests/idp).
//
// Environment: PORT (127.0.0.1 only), KEY_TYPE (RS256 | ES256, the signing algorithm of the access
// tokens), CLIENT_ID, CLIENT_SECRET. The client may ask for the scopes in SCOPE; with no
// `resource` parameter the tokens are for RESOURCE, in JWT format (features.resourceIndicators
// with accessTokenFormat 'jwt', features.clientCredentials).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { default: Provider } = await import(
  pathToFileURL(join(here, '..', 'tests', 'idp', 'node_modules', 'oidc-provider', 'lib', 'index.js')).href);

const port = Number(process.env.PORT || 5557);
const keyType = process.env.KEY_TYPE || 'RS256';
const RESOURCE = 'https://wlcg.cern.ch/jwt/v1/any';
const SCOPE = 'storage.read:/data compute.read';

function signingJwk(alg) {
  const { privateKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `peer-${alg}`, alg, use: 'sig' };
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPE,
  }],
  // RS256 is always present (OpenID Connect requires it for ID tokens); the access tokens use KEY_TYPE.
  jwks: { keys: keyType === 'ES256' ? [signingJwk('RS256'), signingJwk('ES256')] : [signingJwk('RS256')] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: SCOPE.split(' '),
  ttl: { ClientCredentials: 3600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPE,
        audience: RESOURCE,
        accessTokenTTL: 3600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: keyType } },
      }),
    },
  },
});

provider.on('server_error', (ctx, error) => {
  console.error('server_error', ctx.method, ctx.path, error);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`peer oidc-provider on 127.0.0.1:${port}, ${keyType} JWT access tokens`);
});
